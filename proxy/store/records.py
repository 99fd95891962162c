"""What the store keeps, as frozen records: keys, a lease's grant, a ledger row, a spend
report line. Money is USD as float; times are seconds since the epoch (UTC)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

Period = Literal["day", "week", "month", "total"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "total")
Verdict = Literal["ok", "revoked", "requests", "tokens", "budget", "declared_budget"]
WINDOW_S = 60
"""Rate limits count requests and tokens in fixed one-minute windows."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A client key as stored: never its secret, only ``hint`` (its first and last characters).
    ``models``/``tasks`` None: any. ``budget_usd`` applies per ``period`` (UTC calendar).
    ``max_rounds`` / ``max_samples`` None: no cap beyond the policy's."""

    id: str
    name: str
    hint: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    budget_usd: float | None = None
    period: Period = "month"
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    max_rounds: int | None = None
    max_samples: int | None = None

    @property
    def metered(self) -> bool:
        """Whether requests must be admitted by the store (a budget or a rate limit)."""
        return self.budget_usd is not None or self.rpm is not None or self.tpm is not None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def period_id(self, now: float) -> str:
        """The budget period ``now`` falls in: ``2026-12-01``, ``2026-W49``, ``2026-12``,
        ``total`` (a key without a budget counts its spend under ``total``)."""
        if self.budget_usd is None:
            return "total"
        return period_id(self.period, now)


def period_id(period: Period, now: float) -> str:
    # Every period starts at a UTC midnight, so the day decides it (and is cheap to cache).
    return _period_of_day(period, int(now // 86400))


@functools.lru_cache(maxsize=16)
def _period_of_day(period: Period, day: int) -> str:
    moment = datetime.fromtimestamp(day * 86400, UTC)
    if period == "day":
        return moment.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = moment.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return moment.strftime("%Y-%m")
    return "total"


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """A key with what it has spent and holds reserved in its current period."""

    key: KeyRecord
    period: str
    spent_usd: float
    reserved_usd: float

    @property
    def remaining_usd(self) -> float | None:
        if self.key.budget_usd is None:
            return None
        return self.key.budget_usd - self.spent_usd - self.reserved_usd


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """A process asking the store for more of a key's allowance: budget (USD, held against
    the key's ``period``), requests and tokens (counted in the rate ``window``). ``need_*`` is
    what the request at hand must have or be refused; ``want_*`` what the process would like
    to hold (it is granted as much as is left, at least ``need_*``). A granted budget is held
    in the lease ``lease_id`` of ``process`` until settled or returned, and charged as spent
    if its process stops renewing it for ``ttl_s``."""

    key_id: str
    lease_id: str
    process: str
    period: str
    need_usd: float
    want_usd: float
    declared_usd: float | None
    window: int
    need_requests: int
    want_requests: int
    need_tokens: int
    want_tokens: int
    now: float
    ttl_s: float


@dataclass(frozen=True, slots=True)
class Grant:
    """The store's answer: ``left_usd`` the key's budget left before this grant (None
    without a budget); ``requests``/``tokens`` what the window holds after it."""

    verdict: Verdict
    left_usd: float | None
    usd: float
    requests: int
    tokens: int
    granted_requests: int
    granted_tokens: int


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One request in the spend ledger (never prompt or answer text), and what settles it:
    the ``lease_id`` it drew ``reserved_usd`` from (None when nothing was reserved), the
    ``period`` its cost counts in, and the rate ``window`` whose token count is corrected from
    ``tokens_estimated`` to the real total."""

    time: float
    request_id: str
    key_id: str | None
    model: str | None
    task: str | None
    rounds: int | None
    stop_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    reference_cost_usd: float | None
    latency_ms: int
    status: int
    fallbacks: int
    stream: bool
    lease_id: str | None = None
    reserved_usd: float = 0.0
    period: str | None = None
    window: int | None = None
    tokens_estimated: int = 0


LEDGER_COLUMNS = (
    "time",
    "request_id",
    "key_id",
    "model",
    "task",
    "rounds",
    "stop_reason",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "reference_cost_usd",
    "latency_ms",
    "status",
    "fallbacks",
    "stream",
)


def ledger_values(row: LedgerRow) -> tuple[object, ...]:
    return tuple(getattr(row, name) for name in LEDGER_COLUMNS)


@dataclass(frozen=True, slots=True)
class SpendLine:
    """One line of ``perfics spend``: a group (a key name, task, model or day) and its sums."""

    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    reference_cost_usd: float | None
