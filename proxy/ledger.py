"""The spend ledger, written off the request path: one row per request (never its text),
queued and written every ``interval_s`` in one store transaction that also settles the rows'
draws on their leases (charges the real cost, releases what they drew), gives back what idle
leases hold, renews this process's leases and reads back what each leased key has left
(``proxy.leases``). Rows wait in memory (up to ``MAX_PENDING_ROWS``) while the store is away. A
process that dies loses at most its last batch; its leases, no longer renewed, are charged
whole when ``ttl_s`` runs out (``proxy.store.base``). Ledger rows and stored responses older
than their retention are pruned every ``PRUNE_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from proxy.leases import Leases
from proxy.store.base import Store, StoreUnavailable
from proxy.store.records import LedgerRow
from proxy.store.responses import prune_responses

log = structlog.get_logger(__name__)

MAX_PENDING_ROWS = 100_000
PRUNE_EVERY_S = 3600.0


class LedgerWriter:
    """Batches ledger rows for ``store``, with ``leases``' settlement. ``clock`` (monotonic)
    times pruning, ``wall`` stamps the batches."""

    def __init__(
        self,
        store: Store,
        leases: Leases,
        *,
        interval_s: float,
        ttl_s: float,
        retention_s: float,
        responses_retention_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.leases = leases
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        self._retention_s = retention_s
        self._responses_retention_s = responses_retention_s
        self._clock = clock
        self._wall = wall
        self._pending: list[LedgerRow] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._pruned = 0.0

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
        leases = self.leases
        returns = leases.take_idle()
        rows, self._pending = self._pending, []
        viewed = leases.views()
        try:
            left = await self.store.record(
                rows,
                self._wall(),
                process=leases.process,
                ttl_s=self._ttl_s,
                returns=returns,
                budgets=[(key_id, lease.period) for key_id, (lease, _) in viewed.items()],
            )
        except StoreUnavailable as exc:
            self._pending = rows[-MAX_PENDING_ROWS:] + self._pending
            leases.give_back(returns)
            log.warning("ledger.write_failed", rows=len(rows), error=str(exc))
            return
        leases.refresh(viewed, left)
        if self._clock() - self._pruned > PRUNE_EVERY_S:
            self._pruned = self._clock()
            with contextlib.suppress(StoreUnavailable):
                await self.store.prune(self._wall() - self._retention_s)
                await prune_responses(self.store, self._wall() - self._responses_retention_s)

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
        self.leases.release_all()
        await self.flush()
