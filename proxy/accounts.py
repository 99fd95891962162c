"""Keys at request time: who is calling, whether their key admits the request, and the spend
ledger, for one process over the shared store (``proxy.store``).

    caller = await accounts.caller(headers, api_key)          # 401 unless allowed
    scope = accounts.scope(caller)                            # the key's limits for routing
    ticket = await accounts.admit(caller, decision, request_id)   # draw on a lease; 429 / 503
    accounts.record(row)                                      # ledger + settlement, batched

Keys are looked up in the store and kept for ``KEY_CACHE_S`` (a revoked or rotated key stops
working in every process within that second).

A key with a budget or a rate limit is admitted from a lease: this process holds part of the
key's budget and of its current minute's requests and tokens, granted by the store in one
transaction against what every other process holds, and draws on it in memory. Only a request
its lease cannot cover waits for the store, which grants enough for it and about
``LEASE_REQUESTS`` more (at least ``LEASE_SHARE`` of the key's limit). What an idle lease
still holds after ``LEASE_IDLE_S`` goes back to the store with the next ledger batch. So the
budget holds exactly across processes (everything held or spent is in the store), at the cost
that a key near its limit may be refused by one process while another still holds some of
what is left, for at most a second.

The ledger is written off the request path every ``server.ledger_interval_s``; each batch
also settles its requests (charges the real cost, releases what they drew), renews this
process's leases and reads back what each of their keys has left. That reading is this
process's view of a key's budget (``scope``, which the planner refuses a request on without
asking the store): a grant's answer alone would go stale as soon as requests settle below
their estimates, leases are given back or the budget is raised, and a key would be refused
on "nothing left" while the store holds most of its budget. A process that dies loses at
most its last batch; its leases, no longer renewed, are charged whole when
``server.lease_ttl_s`` runs out (``proxy.store.base``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import structlog

from proxy.errors import AuthenticationFailed, KeyStoreUnavailable, QuotaExceeded, RateLimited
from proxy.keys import hash_secret, looks_like_secret
from proxy.store.base import Store, StoreUnavailable
from proxy.store.records import WINDOW_S, KeyRecord, LeaseRequest, LedgerRow, Verdict
from proxy.store.responses import prune_responses
from routing.cost import format_usd
from routing.decision import Decision, KeyScope

log = structlog.get_logger(__name__)

KEY_CACHE_S = 1.0
LEASE_REQUESTS = 16
LEASE_SHARE = 0.05
LEASE_IDLE_S = 1.0
MAX_PENDING_ROWS = 100_000
_PRUNE_EVERY_S = 3600.0
_UNAVAILABLE = "the key store is unavailable; requests that need it are refused until it is back"
USD_EPSILON = 1e-9  # sums of float costs drift; a nano-dollar short is not short


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request admitted for a key: the lease it drew ``amount_usd`` from, what the key had
    left before it (None without a budget), and the headers that report the key's rate limits
    (empty without one)."""

    lease_id: str | None
    period: str
    window: int | None
    tokens_estimated: int
    amount_usd: float
    left_usd: float | None
    headers: Mapping[str, str]


@dataclass(slots=True)
class _Lease:
    """What this process holds of one key's budget (in ``period``) and rate ``window``, not
    yet drawn; ``left_after`` is what the store had left besides it, as of the last grant or
    ledger batch."""

    id: str
    period: str
    usd: float = 0.0
    left_after: float | None = None
    window: int = -1
    requests: int = 0
    tokens: int = 0
    window_requests: int = 0
    window_tokens: int = 0
    last_used: float = 0.0
    asked: float = -math.inf  # when the last answered grant was asked (monotonic)
    answer: Verdict | Literal["unavailable"] = "ok"  # what the store answered it
    answered_window: int = -1  # the rate window it was asked for
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def left_usd(self) -> float | None:
        """What the key has left as this process sees it (its own lease included)."""
        return None if self.left_after is None else self.left_after + self.usd


class Accounts:
    def __init__(
        self,
        store: Store,
        *,
        lease_ttl_s: float,
        ledger_interval_s: float,
        retention_days: float,
        responses_retention_days: float = 30.0,
    ) -> None:
        self.store = store
        self._ttl_s = lease_ttl_s
        self._interval_s = ledger_interval_s
        self._retention_s = retention_days * 86400
        self._responses_retention_s = responses_retention_days * 86400
        self._keys: dict[str, tuple[float, KeyRecord | None]] = {}
        # The models and tasks each key allows, as sets, for the key record they came from.
        self._allowed: dict[str, tuple[KeyRecord, frozenset[str] | None, frozenset[str] | None]]
        self._allowed = {}
        self._has_keys: tuple[float, bool] = (-math.inf, False)
        self.process = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._leases: dict[str, _Lease] = {}
        self._returns: list[tuple[str, float]] = []
        self._pending: list[LedgerRow] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._pruned = 0.0

    # Who is calling ----------------------------------------------------------------------

    async def caller(self, headers: Mapping[str, str], api_key: str | None) -> KeyRecord | None:
        """The caller's key; None for the single ``PERFICS_API_KEY`` or an open proxy (no key
        configured and none ever made). Raises ``AuthenticationFailed`` otherwise."""
        supplied = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if api_key and hmac.compare_digest(supplied.encode(), api_key.encode()):
            return None
        if looks_like_secret(supplied):
            key = await self._key(hash_secret(supplied))
            if key is not None and key.usable(time.time()):
                return key
            if key is not None:
                raise AuthenticationFailed("this API key has been revoked or has expired")
        if api_key or await self.keys_exist():
            raise AuthenticationFailed("invalid or missing API key")
        return None

    async def _key(self, digest: str) -> KeyRecord | None:
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and now - cached[0] < KEY_CACHE_S:
            return cached[1]
        try:
            key = await self.store.key_by_hash(digest)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[digest] = (now, key)
        return key

    async def keys_exist(self) -> bool:
        """Whether any key was ever made (``Store.has_keys``), as of at most ``KEY_CACHE_S``
        ago. Raises ``KeyStoreUnavailable`` when the store cannot say, except on a proxy
        already seen open."""
        now = time.monotonic()
        checked, exist = self._has_keys
        if now - checked < KEY_CACHE_S:
            return exist
        try:
            exist = await self.store.has_keys()
        except StoreUnavailable as exc:
            if checked > -math.inf and not exist:
                return False  # an open proxy stays open while its store is away
            raise _unavailable(exc) from exc
        self._has_keys = (now, exist)
        return exist

    def forget_keys(self) -> None:
        """Drop the cache (after this process changed a key)."""
        self._keys.clear()
        self._has_keys = (-math.inf, False)

    # Admission ---------------------------------------------------------------------------

    def scope(self, key: KeyRecord) -> KeyScope:
        """The key's limits for the planner; what its budget has left as last seen here."""
        lease = self._leases.get(key.id)
        left = lease.left_usd if lease is not None else None
        cached = self._allowed.get(key.id)
        if cached is None or cached[0] is not key:
            if len(self._allowed) > 10_000:
                self._allowed.clear()
            cached = self._allowed[key.id] = (
                key,
                frozenset(key.models) if key.models is not None else None,
                frozenset(key.tasks) if key.tasks is not None else None,
            )
        return KeyScope(
            name=key.name,
            models=cached[1],
            tasks=cached[2],
            max_rounds=key.max_rounds,
            left_usd=left if left is not None else key.budget_usd,
        )

    async def admit(self, key: KeyRecord, decision: Decision) -> Ticket:
        """Draw the plan's estimated cost, one request and its estimated tokens on the key's
        lease (``draw``)."""
        plan = decision.plan
        tokens = plan.estimate.input_tokens(plan.rounds) + plan.estimate.output_tokens(plan.rounds)
        declarations = decision.declarations
        declared = declarations.budget_usd if declarations.budget_source != "key" else None
        return await self.draw(key, plan.estimated_cost_usd, tokens, declared)

    async def draw(
        self, key: KeyRecord, estimate_usd: float, tokens: int, declared: float | None = None
    ) -> Ticket:
        """Draw ``estimate_usd``, one request and ``tokens`` on the key's lease, topping it up
        from the store when it cannot cover them; ``declared`` is the budget the request
        declared itself. Raises ``RateLimited`` / ``QuotaExceeded`` (429) or
        ``KeyStoreUnavailable`` (503); ``QuotaExceeded`` carries ``left_usd`` so the caller
        may plan once more within it."""
        now = time.time()
        period = key.period_id(now)
        if not key.metered:
            return Ticket(None, period, None, 0, 0.0, None, {})
        window = int(now // WINDOW_S)
        lease = self._lease(key, period, window)
        amount = estimate_usd if key.budget_usd is not None else 0.0
        if _short(key, lease, amount, tokens):
            # One grant per lease at a time: a burst that finds the lease empty waits for the
            # first grant (sized for about LEASE_REQUESTS requests) and draws on it, instead of
            # each request asking the store on its own and being refused once others hold
            # what is left.
            waited_from = time.monotonic()
            async with lease.lock:
                if _short(key, lease, amount, tokens):
                    if lease.asked >= waited_from:
                        # The store answered a grant asked after this request came: where that
                        # answer settles this one too, do not ask again (a burst against a
                        # spent key, or a store that is down, costs one call, not one each).
                        _answered_already(key, lease, declared, amount, tokens, now)
                    await self._top_up(key, lease, now, declared, amount, tokens)
        left = lease.left_usd
        if declared is not None and left is not None and declared > left:
            raise _refusal(key, "declared_budget", left, lease, declared, amount, tokens, now)
        lease.usd -= amount
        lease.requests -= 1 if key.rpm is not None else 0
        lease.tokens -= tokens if key.tpm is not None else 0
        lease.last_used = time.monotonic()
        limited = key.rpm is not None or key.tpm is not None
        return Ticket(
            lease.id if key.budget_usd is not None else None,
            period,
            window if limited else None,
            tokens if limited else 0,
            amount,
            left,
            _rate_headers(key, lease, now),
        )

    def _lease(self, key: KeyRecord, period: str, window: int) -> _Lease:
        lease = self._leases.get(key.id)
        if lease is None or lease.period != period:
            if lease is not None and lease.usd > 0:
                self._returns.append((lease.id, lease.usd))
            lease = _Lease(f"{self.process}:{key.id}:{period}", period)
            self._leases[key.id] = lease
        if lease.window != window:
            lease.window, lease.requests, lease.tokens = window, 0, 0
            lease.window_requests = lease.window_tokens = 0
        return lease

    async def _top_up(
        self,
        key: KeyRecord,
        lease: _Lease,
        now: float,
        declared: float | None,
        amount: float,
        tokens: int,
    ) -> None:
        """Ask the store for what the lease lacks for this request and about
        ``LEASE_REQUESTS`` more; raise the refusal when the store cannot give it."""
        short_usd = amount - lease.usd
        need_usd = short_usd if key.budget_usd is not None and short_usd > USD_EPSILON else 0.0
        need_requests = 1 if key.rpm is not None and lease.requests < 1 else 0
        need_tokens = max(tokens - lease.tokens, 0) if key.tpm is not None else 0
        want_usd = 0.0
        if key.budget_usd is not None and need_usd > 0:
            want_usd = max(need_usd, amount * LEASE_REQUESTS, key.budget_usd * LEASE_SHARE / 100)
        want_requests = (
            max(need_requests, math.ceil(key.rpm * LEASE_SHARE))
            if key.rpm is not None and need_requests
            else 0
        )
        want_tokens = (
            max(need_tokens, tokens, math.ceil(key.tpm * LEASE_SHARE))
            if key.tpm is not None and need_tokens
            else 0
        )
        request = LeaseRequest(
            key_id=key.id,
            lease_id=lease.id,
            process=self.process,
            period=lease.period,
            need_usd=need_usd,
            want_usd=want_usd,
            declared_usd=None if declared is None else max(declared - lease.usd, 0.0),
            window=lease.window,
            need_requests=need_requests,
            want_requests=want_requests,
            need_tokens=need_tokens,
            want_tokens=want_tokens,
            now=now,
            ttl_s=self._ttl_s,
        )
        # Kept only once the store answers (a request cancelled while it waits leaves no
        # answer for the others to take).
        asked, window = time.monotonic(), lease.window
        try:
            grant = await self.store.lease(request)
        except StoreUnavailable as exc:
            lease.asked, lease.answer, lease.answered_window = asked, "unavailable", window
            raise _unavailable(exc) from exc
        lease.asked, lease.answer, lease.answered_window = asked, grant.verdict, window
        if grant.left_usd is not None:
            lease.left_after = grant.left_usd - grant.usd
        lease.usd += grant.usd
        lease.requests += grant.granted_requests
        lease.tokens += grant.granted_tokens
        lease.window_requests, lease.window_tokens = grant.requests, grant.tokens
        verdict = grant.verdict
        if verdict == "ok" and lease.usd < amount - USD_EPSILON:
            # Requests that found enough on the lease drew on it while this one waited for
            # its grant, and the store had no more than this request needed.
            verdict = "budget"
        if verdict != "ok":
            left = lease.left_usd  # the store's, as this grant saw it, and this lease
            raise _refusal(key, verdict, left, lease, declared, amount, tokens, now)

    # The ledger --------------------------------------------------------------------------

    def record(self, row: LedgerRow) -> None:
        """Queue one request's ledger row (and its settlement) for the next batch."""
        self._pending.append(row)
        if len(self._pending) >= 512:
            self._wake.set()

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_batches())

    async def flush(self) -> None:
        """Write what is queued now, give back what idle leases hold and renew the rest; on a
        store error the rows and returns stay queued for the next try."""
        idle = time.monotonic() - LEASE_IDLE_S
        for lease in self._leases.values():
            if lease.usd > 0 and lease.last_used < idle:
                self._returns.append((lease.id, lease.usd))
                lease.usd = 0.0
        rows, self._pending = self._pending, []
        returns, self._returns = self._returns, []
        # A grant answered while the batch is written knows better than the batch's reading.
        viewed = {
            key_id: (lease, lease.asked)
            for key_id, lease in self._leases.items()
            if lease.left_after is not None
        }
        try:
            left = await self.store.record(
                rows,
                time.time(),
                process=self.process,
                ttl_s=self._ttl_s,
                returns=returns,
                budgets=[(key_id, lease.period) for key_id, (lease, _) in viewed.items()],
            )
        except StoreUnavailable as exc:
            self._pending = rows[-MAX_PENDING_ROWS:] + self._pending
            self._returns = returns + self._returns
            log.warning("ledger.write_failed", rows=len(rows), error=str(exc))
            return
        for key_id, (lease, asked) in viewed.items():
            fresh = left.get((key_id, lease.period))
            if fresh is not None and lease.asked == asked:
                lease.left_after = fresh
        if time.monotonic() - self._pruned > _PRUNE_EVERY_S:
            self._pruned = time.monotonic()
            with contextlib.suppress(StoreUnavailable):
                await self.store.prune(time.time() - self._retention_s)
                await prune_responses(self.store, time.time() - self._responses_retention_s)

    async def _write_batches(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def aclose(self) -> None:
        """Stop the writer, give every lease back and write what is queued."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        for lease in self._leases.values():
            lease.last_used = -math.inf
        await self.flush()
        await self.store.aclose()


def _short(key: KeyRecord, lease: _Lease, amount: float, tokens: int) -> bool:
    """Whether the lease cannot cover this request (or has never asked the store)."""
    if key.budget_usd is not None and (
        lease.left_after is None or lease.usd < amount - USD_EPSILON
    ):
        return True
    return (key.rpm is not None and lease.requests < 1) or (
        key.tpm is not None and lease.tokens < tokens
    )


def _answered_already(
    key: KeyRecord,
    lease: _Lease,
    declared: float | None,
    amount: float,
    tokens: int,
    now: float,
) -> None:
    """Raise what the store's last answer (fresher than this request) means for it, if that
    answer settles it: the store was unavailable, the key is revoked, its budget as the store
    left it cannot cover ``amount``, or its minute's requests are used up."""
    if lease.answer == "unavailable":
        raise KeyStoreUnavailable(_UNAVAILABLE, headers={"retry-after": "5"})
    left = lease.left_usd
    if lease.answer == "revoked":
        verdict: Verdict = "revoked"
    elif key.budget_usd is not None and left is not None and left < amount - USD_EPSILON:
        verdict = "budget"
    elif (
        lease.answer == "requests"
        and lease.answered_window == lease.window
        and (key.rpm is not None and lease.requests < 1)
    ):
        verdict = "requests"
    else:
        return
    raise _refusal(key, verdict, left, lease, declared, amount, tokens, now)


def _rate_headers(key: KeyRecord, lease: _Lease, now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for a key with a rate limit: what the window has
    left as this process knows it (granted to others is used; its own lease is left)."""
    reset = f"{math.ceil(WINDOW_S - now % WINDOW_S)}s"
    headers: dict[str, str] = {}
    if key.rpm is not None:
        left = key.rpm - lease.window_requests + lease.requests
        headers["x-ratelimit-limit-requests"] = str(key.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(left, 0))
        headers["x-ratelimit-reset-requests"] = reset
    if key.tpm is not None:
        left = key.tpm - lease.window_tokens + lease.tokens
        headers["x-ratelimit-limit-tokens"] = str(key.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(left, 0))
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


def _refusal(
    key: KeyRecord,
    verdict: Verdict,
    left_usd: float | None,
    lease: _Lease,
    declared: float | None,
    amount: float,
    tokens: int,
    now: float,
) -> Exception:
    """The error for a refused request; ``left_usd`` is what the key has left as seen here."""
    name = key.name
    headers = _rate_headers(key, lease, now)
    if verdict == "revoked":
        return AuthenticationFailed("this API key has been revoked or has expired")
    if verdict in ("requests", "tokens"):
        retry = str(math.ceil(WINDOW_S - now % WINDOW_S))
        what = (
            f"{key.rpm} requests per minute"
            if verdict == "requests"
            else f"{key.tpm} tokens per minute (this request is estimated at {tokens})"
        )
        return RateLimited(
            f"rate limit of the key '{name}' reached: {what}; retry in {retry} s",
            headers={**headers, "retry-after": retry},
        )
    left = format_usd(max(left_usd or 0.0, 0.0))
    if verdict == "declared_budget":
        message = (
            f"the declared budget of {format_usd(declared or 0.0)} USD exceeds what the key "
            f"'{name}' has left this period ({left} USD)"
        )
    else:
        message = (
            f"the key '{name}' has {left} USD left this period ({lease.period}); this request "
            f"is estimated at {format_usd(amount)} USD"
        )
    refusal = QuotaExceeded(message, param="budget_usd", headers=headers)
    refusal.left_usd = left_usd
    refusal.retryable_within = verdict == "budget"
    return refusal


def _unavailable(exc: StoreUnavailable) -> KeyStoreUnavailable:
    log.error("store.unavailable", error=str(exc))
    return KeyStoreUnavailable(_UNAVAILABLE, headers={"retry-after": "5"})
