"""Admission: one owner for what stands between a parsed request and the pipeline, and for its
ledger row afterwards.

    admission = await Admission.open(accounts, runtime, headers)   # 401 unless allowed
    decision = await admission.decide(chat, headers, raw=False)
    ...                                                   # serve it
    admission.settle(request_id, outcome_or_error, status=200, stream=False)

``decide``: the caller's key scope → ``pipeline.decision_for`` within it → a draw on the key's lease
(``proxy.leases``) → once more within what the store says is left when the lease's view was
stale → the key's budget as the request's ceiling where it could bind. The rule that a
declared budget must fit what the key has left is the lease's (and the store's grant's).
``headers`` are the key's rate-limit headers, for the answer and for its refusals alike.
``settle`` enters the request in the spend ledger whatever its end, charged what it cost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

from proxy import pipeline
from proxy.accounts import Accounts, Ticket
from proxy.errors import BackendError, PerficsError, QuotaExceeded
from proxy.protocol import ChatCompletionRequest
from proxy.results import Outcome
from proxy.runtime import Runtime
from proxy.store.records import KeyRecord, LedgerRow
from routing.decision import Decision


class Admission:
    """One request's passage through its caller's key: decided, drawn, settled."""

    def __init__(self, accounts: Accounts, runtime: Runtime, caller: KeyRecord | None) -> None:
        self.accounts = accounts
        self.runtime = runtime
        self.caller = caller
        self.ticket: Ticket | None = None
        self.decision: Decision | None = None
        self.started = time.time()

    @classmethod
    async def open(
        cls, accounts: Accounts, runtime: Runtime, headers: Mapping[str, str]
    ) -> Admission:
        """The admission of a request from the caller its headers name (``AuthenticationFailed``
        for a bad, revoked or missing key)."""
        return cls(accounts, runtime, await accounts.caller(headers, runtime.api_key))

    @property
    def headers(self) -> Mapping[str, str]:
        """The key's ``x-ratelimit-*`` headers (empty without rate limits or before a draw)."""
        return self.ticket.headers if self.ticket is not None else {}

    async def decide(
        self, chat: ChatCompletionRequest, headers: Mapping[str, str], *, raw: bool = False
    ) -> Decision:
        """The plan within the key's limits, drawn on its lease (``QuotaExceeded``,
        ``RateLimited``, ``KeyStoreUnavailable``, ``PermissionDenied`` when it does not fit)."""
        key, runtime = self.caller, self.runtime
        scope = self.accounts.scope(key) if key is not None else None
        facts = chat.facts(headers, raw=raw)
        decision = pipeline.decision_for(runtime, facts, scope)
        self.decision = decision
        if key is None or scope is None:
            return decision
        try:
            self.ticket = await self.accounts.admit(key, decision)
        except QuotaExceeded as exc:
            if not exc.retryable_within or exc.left_usd is None:
                raise
            scope = replace(scope, left_usd=max(exc.left_usd, 0.0))
            decision = pipeline.decision_for(runtime, facts, scope)
            self.decision = decision
            self.ticket = await self.accounts.admit(key, decision)
        self.decision = _key_ceiling(decision, self.ticket.left_usd, runtime)
        return self.decision

    def settle(
        self, request_id: str, ended: Outcome | PerficsError | None, *, status: int, stream: bool
    ) -> None:
        """Queue the request's ledger row: what it answered and cost (``ended`` an
        ``Outcome``), or how it failed (the error; None when the client left first)."""
        ticket, decision = self.ticket, self.decision
        outcome = ended if isinstance(ended, Outcome) else None
        failure = ended if isinstance(ended, PerficsError) else None
        spent = outcome.spent if outcome is not None else None
        if spent is None and isinstance(failure, BackendError):
            spent = failure.request  # the upstreams failed it: what its finished calls cost
        usage = spent.usage if spent is not None else None
        # Gone before its answer was whole (or failed here): charged what it reserved, since
        # its last call's tokens, perhaps already streamed, are not known.
        reserved = ticket.amount_usd if ticket else 0.0
        cost = spent.cost_usd if spent is not None else reserved
        self.accounts.record(
            LedgerRow(
                time=self.started,
                request_id=request_id,
                key_id=self.caller.id if self.caller is not None else None,
                model=outcome.model if outcome else (decision.plan.model if decision else None),
                task=decision.declarations.task if decision else None,
                rounds=outcome.rounds if outcome else None,
                stop_reason=outcome.stop_reason if outcome else None,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                cost_usd=cost,
                reference_cost_usd=outcome.reference_cost_usd if outcome else None,
                latency_ms=round((time.time() - self.started) * 1000),
                status=status,
                fallbacks=len(outcome.fallbacks) if outcome else 0,
                stream=stream,
                lease_id=ticket.lease_id if ticket else None,
                reserved_usd=ticket.amount_usd if ticket else 0.0,
                period=ticket.period if ticket else None,
                window=ticket.window if ticket else None,
                tokens_estimated=ticket.tokens_estimated if ticket else 0,
            )
        )


def _key_ceiling(decision: Decision, left: float | None, runtime: Runtime) -> Decision:
    """The key's budget as the run's ceiling, only where it could bind: a ceiling caps answers
    at the planned length and holds the upstream to it by streaming, which a request far inside
    its key's budget does not need (its overspend is at most its estimate's error, like any
    request in flight)."""
    if left is None:
        return decision
    declarations = decision.declarations
    binds = left < decision.worst_case_usd(runtime.policy)
    if binds and (declarations.budget_usd is None or declarations.budget_usd > left):
        declarations = replace(declarations, budget_usd=max(left, 0.0), budget_source="key")
    elif not binds and declarations.budget_source == "key":
        declarations = replace(declarations, budget_usd=None, budget_source=None)
    else:
        return decision
    return replace(decision, declarations=declarations)
