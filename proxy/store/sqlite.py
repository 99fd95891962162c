"""The embedded store: one SQLite file (WAL), shared by the processes of one machine.

Calls run on the event loop: a statement on a local file takes microseconds, fewer than a hop
to a thread would. Writers take SQLite's lock at ``BEGIN IMMEDIATE`` and wait for it up to
``busy_timeout``; the transactions are short (an admission, a ledger batch), which is why
several processes on one machine can share the file. Many machines need PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from proxy.store.base import Store, StoreUnavailable, Tx
from proxy.store.records import Admission, AdmitRequest, Verdict

BUSY_TIMEOUT_MS = 5000


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

    async def admit(self, request: AdmitRequest) -> Admission:
        r = request
        async with self.transaction() as tx:
            rows = await tx.fetch(
                "SELECT budget_usd, rpm, tpm, revoked_at, expires_at FROM api_keys WHERE id = ?",
                (r.key_id,),
            )
            if not rows:
                return Admission("revoked", None, 0, 0)
            budget, rpm, tpm, revoked, expires = rows[0]
            if revoked is not None or (expires is not None and expires <= r.now):
                return Admission("revoked", None, 0, 0)
            window = await tx.fetch(
                "SELECT requests, tokens FROM rate_windows WHERE key_id = ? AND window_start = ?",
                (r.key_id, r.window),
            )
            requests, tokens = window[0] if window else (0, 0)
            left: float | None = None
            if budget is not None:
                spent = await tx.fetch(
                    "SELECT spent_usd FROM key_spend WHERE key_id = ? AND period = ?",
                    (r.key_id, r.period),
                )
                held = await tx.fetch(
                    "SELECT COALESCE(SUM(amount_usd), 0) FROM reservations "
                    "WHERE key_id = ? AND period = ?",
                    (r.key_id, r.period),
                )
                left = float(budget) - (float(spent[0][0]) if spent else 0.0) - float(held[0][0])
            verdict = _verdict(r, left, rpm, tpm, requests, tokens)
            if verdict != "ok":
                return Admission(verdict, left, requests, tokens)
            if budget is not None:
                await tx.execute(
                    "INSERT INTO reservations (id, key_id, period, amount_usd, request_id, "
                    "model, task, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.reservation_id,
                        r.key_id,
                        r.period,
                        r.amount_usd,
                        r.request_id,
                        r.model,
                        r.task,
                        r.now,
                        r.now + r.ttl_s,
                    ),
                )
            if rpm is not None or tpm is not None:
                await tx.execute(
                    "INSERT INTO rate_windows (key_id, window_start, requests, tokens) "
                    "VALUES (?, ?, 1, ?) ON CONFLICT (key_id, window_start) DO UPDATE SET "
                    "requests = rate_windows.requests + 1, tokens = rate_windows.tokens + "
                    "excluded.tokens",
                    (r.key_id, r.window, r.tokens),
                )
            return Admission("ok", left, requests + 1, tokens + r.tokens)

    async def aclose(self) -> None:
        self._db.close()


def _verdict(
    r: AdmitRequest,
    left: float | None,
    rpm: int | None,
    tpm: int | None,
    requests: int,
    tokens: int,
) -> Verdict:
    """The same order as ``perfics_admit`` in the PostgreSQL migration."""
    if rpm is not None and requests + 1 > rpm:
        return "requests"
    if tpm is not None and tokens + r.tokens > tpm:
        return "tokens"
    if left is not None and r.declared_usd is not None and r.declared_usd > left:
        return "declared_budget"
    if left is not None and r.amount_usd > left:
        return "budget"
    return "ok"
