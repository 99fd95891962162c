"""The store interface, written once over a small transaction protocol that each database
implements (``proxy.store.sqlite``, ``proxy.store.postgres``). SQL here uses ``?``
placeholders and only what SQLite and PostgreSQL share (``ON CONFLICT``, ``RETURNING``).

Budgets and rate limits are handed out in leases (``proxy.accounts``): ``lease`` grants a
process part of a key's budget (held in its lease row and in ``key_spend.reserved_usd``) and
of its rate window, atomically against what every other process holds. ``record`` writes
ledger rows and, in the same transaction, charges their real costs and releases what they
reserved from their lease, gives back what idle leases still hold, renews the process's
leases and reads back what their keys have left (a process's view of a key's budget is never
older than its last batch). A lease its process stopped renewing (the process died) is
charged at what it still holds once it expires, with a ledger row of status 0, so a crash
never frees budget that may have been spent.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from proxy.store.records import (
    LEDGER_COLUMNS,
    WINDOW_S,
    Grant,
    KeyRecord,
    KeyUsage,
    LeaseRequest,
    LedgerRow,
    SpendLine,
    ledger_values,
)

_KEY_COLUMNS = (
    "id, name, hint, created_at, expires_at, revoked_at, budget_usd, period, rpm, tpm, "
    "models, tasks, max_rounds, max_samples"
)
_INSERT_LEDGER = (
    f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in LEDGER_COLUMNS)})"
)
# Charge ``spent`` and take what was released out of ``reserved``.
_CHARGE = (
    "INSERT INTO key_spend (key_id, period, spent_usd, reserved_usd) VALUES (?, ?, ?, 0) "
    "ON CONFLICT (key_id, period) DO UPDATE SET spent_usd = key_spend.spent_usd + "
    "excluded.spent_usd, reserved_usd = key_spend.reserved_usd - ?"
)
SPEND_GROUPS = {
    "key": "COALESCE(k.name, '(no key)')",
    "task": "COALESCE(l.task, '(none)')",
    "model": "COALESCE(l.model, '(none)')",
    "day": "{day}",
}
# A lease holding no more than float rounding holds nothing.
_EMPTY_USD = 1e-12
# Keys per query when a ledger batch reads back what budgets have left (a bound on the
# query's parameters).
_LEFT_CHUNK = 400
UPDATABLE = frozenset(
    {
        "name",
        "budget_usd",
        "period",
        "rpm",
        "tpm",
        "models",
        "tasks",
        "max_rounds",
        "max_samples",
        "expires_at",
    }
)


_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")


def shown_url(url: str) -> str:
    """``url`` with its password replaced, for messages and logs."""
    return _PASSWORD.sub(r"\1***@", url)


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the operation."""


class KeyConflict(Exception):
    """A key operation the keys in the store do not allow (one of the two below)."""


class KeyNameTaken(KeyConflict):
    """Another key has that name."""


class UnknownKey(KeyConflict):
    """No key has that id or name."""


class Tx(Protocol):
    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int: ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...


class Store(ABC):
    """Keys, budgets, rate windows and the spend ledger. Every method is one transaction."""

    day_expression: str

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction that takes the write lock at once (SQLite ``BEGIN IMMEDIATE``)."""

    @abstractmethod
    async def lease(self, request: LeaseRequest) -> Grant:
        """Atomically check the key (revoked, expired), its rate window and budget for the
        request's needs, and when all allow them grant as much as wanted and left."""

    @abstractmethod
    async def aclose(self) -> None: ...

    # Keys -----------------------------------------------------------------------------

    async def insert_key(self, key: KeyRecord, secret_hash: str) -> None:
        async with self.transaction() as tx:
            if await tx.fetch("SELECT 1 FROM api_keys WHERE name = ?", (key.name,)):
                raise KeyNameTaken(f"a key named {key.name!r} exists")
            await tx.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}, secret_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*_key_values(key), secret_hash),
            )

    async def key_by_hash(self, secret_hash: str) -> KeyRecord | None:
        async with self.transaction() as tx:
            rows = await tx.fetch(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?", (secret_hash,)
            )
        return _key(rows[0]) if rows else None

    async def key(self, ref: str) -> KeyRecord:
        """The key whose id or name is ``ref``; ``UnknownKey`` when there is none."""
        async with self.transaction() as tx:
            rows = await tx.fetch(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ? OR name = ?", (ref, ref)
            )
        if not rows:
            raise UnknownKey(f"no key has the id or name {ref[:64]!r}")
        return _key(rows[0])

    async def has_keys(self) -> bool:
        """Whether any key was ever made: from then on requests without a valid key are
        refused (revoking every key closes the proxy; it never reopens it)."""
        async with self.transaction() as tx:
            rows = await tx.fetch("SELECT 1 FROM api_keys LIMIT 1")
        return bool(rows)

    async def keys(self, now: float) -> list[KeyUsage]:
        """Every key, oldest first, with its current period's spend and what leases hold."""
        async with self.transaction() as tx:
            keys = [
                _key(row)
                for row in await tx.fetch(
                    f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
                )
            ]
            sums = {
                (k, p): (float(s), float(r))
                for k, p, s, r in await tx.fetch(
                    "SELECT key_id, period, spent_usd, reserved_usd FROM key_spend"
                )
            }
        usage = []
        for key in keys:
            period = key.period_id(now)
            spent, held = sums.get((key.id, period), (0.0, 0.0))
            usage.append(KeyUsage(key, period, spent, held))
        return usage

    async def update_key(self, key_id: str, changes: dict[str, object]) -> None:
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        if not changes:
            return
        values = [
            json.dumps(list(v)) if isinstance(v, tuple | list) else v for v in changes.values()
        ]
        assignments = ", ".join(f"{name} = ?" for name in changes)
        async with self.transaction() as tx:
            if "name" in changes and await tx.fetch(
                "SELECT 1 FROM api_keys WHERE name = ? AND id <> ?", (changes["name"], key_id)
            ):
                raise KeyNameTaken(f"a key named {changes['name']!r} exists")
            await tx.execute(f"UPDATE api_keys SET {assignments} WHERE id = ?", (*values, key_id))

    async def set_secret(self, key_id: str, secret_hash: str, hint: str) -> None:
        async with self.transaction() as tx:
            await tx.execute(
                "UPDATE api_keys SET secret_hash = ?, hint = ? WHERE id = ?",
                (secret_hash, hint, key_id),
            )

    async def revoke(self, key_id: str, now: float) -> None:
        async with self.transaction() as tx:
            await tx.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            )

    # Ledger -----------------------------------------------------------------------------

    async def record(
        self,
        rows: Sequence[LedgerRow],
        now: float,
        *,
        process: str,
        ttl_s: float,
        returns: Sequence[tuple[str, float]] = (),
        budgets: Sequence[tuple[str, str]] = (),
    ) -> dict[tuple[str, str], float]:
        """Write ``rows`` and settle them; give back ``returns`` (lease id, USD) that idle
        leases still hold; renew ``process``'s leases for ``ttl_s``; charge expired leases.
        Returns what each key of ``budgets`` (key id, period) has left in that period once
        all that is done (budget less spent and reserved), for the keys that have a budget."""
        async with self.transaction() as tx:
            if rows:
                await tx.executemany(_INSERT_LEDGER, [ledger_values(row) for row in rows])
                await _settle(tx, rows)
            for lease_id, usd in returns:
                await _release(tx, lease_id, usd, 0.0)
            await tx.execute(
                "DELETE FROM leases WHERE process = ? AND amount_usd <= ?", (process, _EMPTY_USD)
            )
            await tx.execute(
                "UPDATE leases SET expires_at = ? WHERE process = ?", (now + ttl_s, process)
            )
            await _expire(tx, now)
            await tx.execute(
                "DELETE FROM rate_windows WHERE window_start < ?", (now // WINDOW_S - 2,)
            )
            return await _left(tx, budgets)

    async def prune(self, before: float) -> int:
        """Delete ledger rows older than ``before`` (the retention setting)."""
        async with self.transaction() as tx:
            return await tx.execute("DELETE FROM ledger WHERE time < ?", (before,))

    async def spend(self, by: str, since: float | None) -> list[SpendLine]:
        """Requests, tokens, cost and reference cost grouped ``by`` key, task, model or day."""
        group = SPEND_GROUPS[by].format(day=self.day_expression)
        where = "WHERE l.time >= ?" if since is not None else ""
        sql = (
            f"SELECT {group} AS g, COUNT(*), COALESCE(SUM(l.prompt_tokens), 0), "
            "COALESCE(SUM(l.completion_tokens), 0), COALESCE(SUM(l.cost_usd), 0), "
            "SUM(l.reference_cost_usd) "
            f"FROM ledger l LEFT JOIN api_keys k ON k.id = l.key_id {where} "
            "GROUP BY g ORDER BY g"
        )
        async with self.transaction() as tx:
            rows = await tx.fetch(sql, () if since is None else (since,))
        return [
            SpendLine(
                str(g), int(n), int(p), int(c), float(cost), None if ref is None else float(ref)
            )
            for g, n, p, c, cost, ref in rows
        ]


async def _settle(tx: Tx, rows: Sequence[LedgerRow]) -> None:
    """Charge each row's real cost and release what it reserved from its lease; rows of keys
    without a budget are charged to the key's ``total``."""
    drawn: dict[str, list[float]] = {}
    unleased: dict[tuple[str, str], float] = {}
    corrections: dict[tuple[str, int], int] = {}
    for row in rows:
        if row.key_id is None or row.period is None:
            continue
        if row.lease_id is not None:
            totals = drawn.setdefault(row.lease_id, [0.0, 0.0])
            totals[0] += row.reserved_usd
            totals[1] += row.cost_usd
        else:
            slot = (row.key_id, row.period)
            unleased[slot] = unleased.get(slot, 0.0) + row.cost_usd
        if row.window is not None:
            real = row.prompt_tokens + row.completion_tokens
            slot_window = (row.key_id, row.window)
            corrections[slot_window] = corrections.get(slot_window, 0) + real - row.tokens_estimated
    for lease_id, (reserved, cost) in drawn.items():
        await _release(tx, lease_id, reserved, cost)
    for (key_id, period), cost in unleased.items():
        await tx.execute(_CHARGE, (key_id, period, cost, 0.0))
    for (key_id, window), delta in corrections.items():
        await tx.execute(
            "UPDATE rate_windows SET tokens = tokens + ? WHERE key_id = ? AND window_start = ?",
            (delta, key_id, window),
        )


async def _release(tx: Tx, lease_id: str, usd: float, cost: float) -> None:
    """Take ``usd`` out of the lease and the key's reserved sum, and charge ``cost``. A lease
    that expired first was charged whole then: nothing more is charged for it."""
    held = await tx.fetch(
        "UPDATE leases SET amount_usd = amount_usd - ? WHERE id = ? RETURNING key_id, period",
        (usd, lease_id),
    )
    if held:
        key_id, period = held[0]
        await tx.execute(_CHARGE, (key_id, period, cost, usd))


async def _left(tx: Tx, budgets: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """What each (key id, period) of ``budgets`` has left, for keys with a budget: one query
    per ``_LEFT_CHUNK`` keys."""
    left: dict[tuple[str, str], float] = {}
    for start in range(0, len(budgets), _LEFT_CHUNK):
        chunk = budgets[start : start + _LEFT_CHUNK]
        keys = sorted({key_id for key_id, _ in chunk})
        periods = sorted({period for _, period in chunk})
        rows = await tx.fetch(
            "SELECT a.id, a.budget_usd, s.period, s.spent_usd + s.reserved_usd FROM api_keys a "
            "LEFT JOIN key_spend s ON s.key_id = a.id AND s.period IN "
            f"({', '.join('?' for _ in periods)}) "
            f"WHERE a.budget_usd IS NOT NULL AND a.id IN ({', '.join('?' for _ in keys)})",
            (*periods, *keys),
        )
        budget = {key_id: float(usd) for key_id, usd, _, _ in rows}
        used = {(key_id, period): float(usd) for key_id, _, period, usd in rows if period}
        for slot in chunk:
            if slot[0] in budget:
                left[slot] = budget[slot[0]] - used.get(slot, 0.0)
    return left


async def _expire(tx: Tx, now: float) -> None:
    expired = await tx.fetch(
        "DELETE FROM leases WHERE expires_at < ? "
        "RETURNING id, key_id, period, amount_usd, created_at",
        (now,),
    )
    for lease_id, key_id, period, amount, created in expired:
        await tx.execute(_CHARGE, (key_id, period, amount, amount))
        if amount <= _EMPTY_USD:
            continue
        row = LedgerRow(
            time=float(created),
            request_id=lease_id,
            key_id=key_id,
            model=None,
            task=None,
            rounds=None,
            stop_reason="expired",
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=float(amount),
            reference_cost_usd=None,
            latency_ms=0,
            status=0,
            fallbacks=0,
            stream=False,
        )
        await tx.execute(_INSERT_LEDGER, ledger_values(row))


def _key_values(key: KeyRecord) -> tuple[object, ...]:
    return (
        key.id,
        key.name,
        key.hint,
        key.created_at,
        key.expires_at,
        key.revoked_at,
        key.budget_usd,
        key.period,
        key.rpm,
        key.tpm,
        None if key.models is None else json.dumps(list(key.models)),
        None if key.tasks is None else json.dumps(list(key.tasks)),
        key.max_rounds,
        key.max_samples,
    )


def _key(row: Sequence[Any]) -> KeyRecord:
    (
        id_,
        name,
        hint,
        created,
        expires,
        revoked,
        budget,
        period,
        rpm,
        tpm,
        models,
        tasks,
        rounds,
        samples,
    ) = row
    return KeyRecord(
        id=id_,
        name=name,
        hint=hint,
        created_at=float(created),
        expires_at=None if expires is None else float(expires),
        revoked_at=None if revoked is None else float(revoked),
        budget_usd=None if budget is None else float(budget),
        period=period,
        rpm=rpm,
        tpm=tpm,
        models=None if models is None else tuple(json.loads(models)),
        tasks=None if tasks is None else tuple(json.loads(tasks)),
        max_rounds=rounds,
        max_samples=samples,
    )
