"""The shared store: PostgreSQL through psycopg's async pool, for several proxy processes or
machines sharing keys and budgets. A lease is one call of the ``perfics_lease`` function
(migration 0001), one round trip."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from proxy.store.base import Store, StoreUnavailable, Tx, shown_url
from proxy.store.records import Grant, LeaseRequest

POOL_SIZE = 8
CONNECT_TIMEOUT_S = 5.0


def _sql(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgTx:
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        cursor = await self._connection.execute(_sql(sql), params)
        return await cursor.fetchall()

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        cursor = await self._connection.execute(_sql(sql), params)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        async with self._connection.cursor() as cursor:
            await cursor.executemany(_sql(sql), rows)


class PostgresStore(Store):
    day_expression = "to_char(to_timestamp(l.time) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def __init__(self, pool: AsyncConnectionPool[Any], url: str) -> None:
        self._pool = pool
        self._url = shown_url(url)

    @classmethod
    async def connect(cls, url: str) -> PostgresStore:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            timeout=CONNECT_TIMEOUT_S,
            kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT_S)},
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot connect to {shown_url(url)}: {exc}") from exc
        return cls(pool, url)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        try:
            async with self._pool.connection() as connection, connection.transaction():
                yield _PgTx(connection)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable(f"the database {self._url} is unavailable: {exc}") from exc

    async def lease(self, request: LeaseRequest) -> Grant:
        r = request
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(
                    "SELECT * FROM perfics_lease(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                    "%s, %s)",
                    (
                        r.key_id,
                        r.lease_id,
                        r.process,
                        r.period,
                        r.need_usd,
                        r.want_usd,
                        r.declared_usd,
                        r.window,
                        r.need_requests,
                        r.want_requests,
                        r.need_tokens,
                        r.want_tokens,
                        r.now,
                        r.ttl_s,
                    ),
                )
                row = await cursor.fetchone()
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable(f"the database {self._url} is unavailable: {exc}") from exc
        assert row is not None
        verdict, left, usd, requests, tokens, more_requests, more_tokens = row
        return Grant(
            verdict,
            left,
            float(usd),
            int(requests),
            int(tokens),
            int(more_requests),
            int(more_tokens),
        )

    async def aclose(self) -> None:
        await self._pool.close()
