"""The embedded store: one SQLite file (WAL), shared by the processes of one machine.

Calls run on the event loop: a statement on a local file takes microseconds, fewer than a hop
to a thread would. Writers take SQLite's lock at ``BEGIN IMMEDIATE`` and wait for it up to
``busy_timeout``; the transactions are short (a lease, a ledger batch), which is why
several processes on one machine can share the file. Many machines need PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from proxy.store.base import Store, StoreUnavailable, Tx
from proxy.store.records import Grant, LeaseRequest, Verdict

BUSY_TIMEOUT_MS = 5000
# The same checks, in the same order, as ``perfics_lease`` in the PostgreSQL migration.
_READ = (
    "SELECT a.budget_usd, a.rpm, a.tpm, a.revoked_at, a.expires_at, "
    "COALESCE(s.spent_usd, 0) + COALESCE(s.reserved_usd, 0), "
    "COALESCE(w.requests, 0), COALESCE(w.tokens, 0) FROM api_keys a "
    "LEFT JOIN key_spend s ON s.key_id = a.id AND s.period = ? "
    "LEFT JOIN rate_windows w ON w.key_id = a.id AND w.window_start = ? WHERE a.id = ?"
)
_RESERVE = (
    "INSERT INTO key_spend (key_id, period, spent_usd, reserved_usd) VALUES (?, ?, 0, ?) "
    "ON CONFLICT (key_id, period) DO UPDATE SET reserved_usd = key_spend.reserved_usd + "
    "excluded.reserved_usd"
)
_HOLD = (
    "INSERT INTO leases (id, key_id, period, amount_usd, process, created_at, expires_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET amount_usd = "
    "leases.amount_usd + excluded.amount_usd, expires_at = excluded.expires_at"
)
_COUNT = (
    "INSERT INTO rate_windows (key_id, window_start, requests, tokens) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key_id, window_start) DO UPDATE SET requests = rate_windows.requests + "
    "excluded.requests, tokens = rate_windows.tokens + excluded.tokens"
)


class _SqliteTx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._db.execute(sql, params).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.executemany(sql, rows)


class SqliteStore(Store):
    day_expression = "strftime('%Y-%m-%d', l.time, 'unixepoch')"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL with NORMAL: a commit survives the process; the last commits may be lost
            # only if the machine itself loses power.
            self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite database {path}: {exc}") from exc
        self._tx = _SqliteTx(self._db)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite database is unavailable: {exc}") from exc
        try:
            yield self._tx
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite database refused a commit: {exc}") from exc

    async def lease(self, request: LeaseRequest) -> Grant:
        db = self._db
        # On the loop, without the transaction helper: the only store call a request may
        # make before its first model call.
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite database is unavailable: {exc}") from exc
        try:
            grant = self._lease(request)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return grant

    def _lease(self, r: LeaseRequest) -> Grant:
        db = self._db
        row = db.execute(_READ, (r.period, r.window, r.key_id)).fetchone()
        if row is None:
            return Grant("revoked", None, 0.0, 0, 0, 0, 0)
        budget, rpm, tpm, revoked, expires, used, requests, tokens = row
        left = None if budget is None else budget - used
        verdict = _verdict(r, left, rpm, tpm, requests, tokens, revoked, expires)
        if verdict != "ok":
            # As perfics_lease: a revoked or expired key's budget is not read (left None).
            shown = None if verdict == "revoked" else left
            return Grant(verdict, shown, 0.0, requests, tokens, 0, 0)
        usd = 0.0
        if left is not None and r.want_usd > 0:
            usd = min(r.want_usd, left)
            db.execute(_RESERVE, (r.key_id, r.period, usd))
            db.execute(
                _HOLD, (r.lease_id, r.key_id, r.period, usd, r.process, r.now, r.now + r.ttl_s)
            )
        more_requests = more_tokens = 0
        if rpm is not None or tpm is not None:
            more_requests = r.want_requests if rpm is None else min(r.want_requests, rpm - requests)
            more_tokens = r.want_tokens if tpm is None else min(r.want_tokens, tpm - tokens)
            db.execute(_COUNT, (r.key_id, r.window, more_requests, more_tokens))
        return Grant(
            "ok",
            left,
            usd,
            requests + more_requests,
            tokens + more_tokens,
            more_requests,
            more_tokens,
        )

    async def aclose(self) -> None:
        self._db.close()


def _verdict(
    r: LeaseRequest,
    left: float | None,
    rpm: int | None,
    tpm: int | None,
    requests: int,
    tokens: int,
    revoked: float | None,
    expires: float | None,
) -> Verdict:
    if revoked is not None or (expires is not None and expires <= r.now):
        return "revoked"
    if rpm is not None and requests + r.need_requests > rpm:
        return "requests"
    if tpm is not None and tokens + r.need_tokens > tpm:
        return "tokens"
    if left is not None and r.declared_usd is not None and r.declared_usd > left:
        return "declared_budget"
    if left is not None and r.need_usd > left:
        return "budget"
    return "ok"
