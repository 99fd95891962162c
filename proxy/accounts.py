"""Keys at request time: who is calling, whether their key admits the request, and the spend
ledger, for one process over the shared store (``proxy.store``).

    caller = await accounts.caller(headers, api_key)          # 401 unless allowed
    scope = accounts.scope(caller)                            # the key's limits for routing
    ticket = await accounts.admit(caller, decision, request_id)   # reserve; 429 / 503
    accounts.record(ticket.row(...))                          # ledger + settlement, batched

Keys are looked up in the store and kept for ``KEY_CACHE_S`` (a revoked or rotated key stops
working in other processes within that second; a metered key's admission reads the store
anyway, so a revoked budgeted key is refused at once). Requests of a key with a budget or a
rate limit cost one store transaction before the first model call; everything else the store
hears of comes in the ledger batches, written off the request path every
``server.ledger_interval_s``. A process that dies loses at most that last batch; its
reservations are charged when they expire (``proxy.store.base``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from proxy.errors import AuthenticationFailed, KeyStoreUnavailable, QuotaExceeded, RateLimited
from proxy.keys import hash_secret, looks_like_secret
from proxy.store.base import Store, StoreUnavailable, new_reservation_id
from proxy.store.records import WINDOW_S, Admission, AdmitRequest, KeyRecord, LedgerRow
from routing.cost import format_usd
from routing.decision import Decision, KeyScope

log = structlog.get_logger(__name__)

KEY_CACHE_S = 1.0
MAX_PENDING_ROWS = 100_000
_PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request admitted for a key: what it reserved, and the headers that report the key's
    rate limits (empty without one)."""

    key: KeyRecord
    reservation_id: str | None
    period: str
    window: int | None
    tokens_estimated: int
    amount_usd: float
    left_usd: float | None
    headers: Mapping[str, str]


class Accounts:
    def __init__(
        self,
        store: Store,
        *,
        reservation_ttl_s: float,
        ledger_interval_s: float,
        retention_days: float,
    ) -> None:
        self.store = store
        self._ttl_s = reservation_ttl_s
        self._interval_s = ledger_interval_s
        self._retention_s = retention_days * 86400
        self._keys: dict[str, tuple[float, KeyRecord | None]] = {}
        self._has_keys: tuple[float, bool] = (-math.inf, False)
        self._left: dict[str, float] = {}
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
        if api_key or await self._keys_exist():
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

    async def _keys_exist(self) -> bool:
        now = time.monotonic()
        checked, exist = self._has_keys
        if now - checked < KEY_CACHE_S:
            return exist
        try:
            exist = await self.store.has_keys()
        except StoreUnavailable as exc:
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
        left = self._left.get(key.id, key.budget_usd)
        return KeyScope(
            name=key.name,
            models=frozenset(key.models) if key.models is not None else None,
            tasks=frozenset(key.tasks) if key.tasks is not None else None,
            max_rounds=key.max_rounds,
            left_usd=left,
        )

    async def admit(self, key: KeyRecord, decision: Decision, request_id: str) -> Ticket:
        """Reserve the plan's estimated cost and count the request in the key's minute.
        Raises ``RateLimited`` / ``QuotaExceeded`` (429) or ``KeyStoreUnavailable`` (503);
        ``QuotaExceeded`` carries ``left_usd`` so the caller may plan once more within it."""
        now = time.time()
        plan = decision.plan
        tokens = plan.estimate.input_tokens(plan.rounds) + plan.estimate.output_tokens(plan.rounds)
        window = int(now // WINDOW_S)
        period = key.period_id(now)
        if not key.metered:
            return Ticket(key, None, period, None, 0, 0.0, None, {})
        declared = decision.declarations.budget_usd
        request = AdmitRequest(
            key_id=key.id,
            reservation_id=new_reservation_id(),
            request_id=request_id,
            period=period,
            amount_usd=plan.estimated_cost_usd if key.budget_usd is not None else 0.0,
            declared_usd=declared if decision.declarations.budget_source != "key" else None,
            tokens=tokens,
            window=window,
            now=now,
            ttl_s=self._ttl_s,
            model=plan.model,
            task=plan.task,
        )
        try:
            admission = await self.store.admit(request)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc
        if admission.left_usd is not None:
            self._left[key.id] = admission.left_usd - (
                request.amount_usd if admission.verdict == "ok" else 0.0
            )
        headers = _rate_headers(key, admission, now)
        if admission.verdict == "ok":
            return Ticket(
                key,
                request.reservation_id if key.budget_usd is not None else None,
                period,
                window if key.rpm is not None or key.tpm is not None else None,
                tokens if key.rpm is not None or key.tpm is not None else 0,
                request.amount_usd,
                admission.left_usd,
                headers,
            )
        raise _refusal(key, admission, request, headers, now)

    # The ledger --------------------------------------------------------------------------

    def record(self, row: LedgerRow) -> None:
        """Queue one request's ledger row (and its settlement) for the next batch."""
        self._pending.append(row)
        if len(self._pending) >= 512:
            self._wake.set()

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_batches())

    async def flush(self) -> None:
        """Write what is queued now; on a store error the rows stay queued for the next try."""
        rows, self._pending = self._pending, []
        try:
            await self.store.record(rows, time.time())
        except StoreUnavailable as exc:
            self._pending = rows[-MAX_PENDING_ROWS:] + self._pending
            log.warning("ledger.write_failed", rows=len(rows), error=str(exc))
            return
        if time.monotonic() - self._pruned > _PRUNE_EVERY_S:
            self._pruned = time.monotonic()
            with contextlib.suppress(StoreUnavailable):
                await self.store.prune(time.time() - self._retention_s)

    async def _write_batches(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.flush()
        await self.store.aclose()


def _rate_headers(key: KeyRecord, admission: Admission, now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for a key with a rate limit."""
    reset = f"{math.ceil(WINDOW_S - now % WINDOW_S)}s"
    headers: dict[str, str] = {}
    if key.rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(key.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(key.rpm - admission.requests, 0))
        headers["x-ratelimit-reset-requests"] = reset
    if key.tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(key.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(key.tpm - admission.tokens, 0))
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


def _refusal(
    key: KeyRecord,
    admission: Admission,
    request: AdmitRequest,
    headers: dict[str, str],
    now: float,
) -> Exception:
    name = key.name
    if admission.verdict == "revoked":
        return AuthenticationFailed("this API key has been revoked or has expired")
    if admission.verdict in ("requests", "tokens"):
        retry = str(math.ceil(WINDOW_S - now % WINDOW_S))
        what = (
            f"{key.rpm} requests per minute"
            if admission.verdict == "requests"
            else f"{key.tpm} tokens per minute (this request is estimated at {request.tokens})"
        )
        return RateLimited(
            f"rate limit of the key '{name}' reached: {what}; retry in {retry} s",
            headers={**headers, "retry-after": retry},
        )
    left = format_usd(max(admission.left_usd or 0.0, 0.0))
    if admission.verdict == "declared_budget":
        message = (
            f"the declared budget of {format_usd(request.declared_usd or 0.0)} USD exceeds what "
            f"the key '{name}' has left this period ({left} USD)"
        )
    else:
        message = (
            f"the key '{name}' has {left} USD left this period ({request.period}); this request "
            f"is estimated at {format_usd(request.amount_usd)} USD"
        )
    refusal = QuotaExceeded(message, param="budget_usd", headers=headers)
    refusal.left_usd = admission.left_usd
    refusal.retryable_within = admission.verdict == "budget"
    return refusal


def _unavailable(exc: StoreUnavailable) -> KeyStoreUnavailable:
    log.error("store.unavailable", error=str(exc))
    return KeyStoreUnavailable(
        "the key store is unavailable; requests that need it are refused until it is back",
        headers={"retry-after": "5"},
    )
