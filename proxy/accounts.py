"""Keys at request time, for one process over the shared store (``proxy.store``), in three
parts with one job each, made together here:

    caller = await accounts.caller(headers, api_key)        # proxy.callers: 401 unless allowed
    scope = accounts.scope(caller)                          # proxy.leases: the key's limits
    ticket = await accounts.admit(caller, decision)         # proxy.leases: a draw; 429 / 503
    accounts.record(row)                                    # proxy.ledger: batched, settled

Their clocks and intervals are the constructor's (tests pass fake clocks).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping

from proxy.callers import KEY_CACHE_S, Callers
from proxy.leases import LEASE_IDLE_S, Leases, Ticket
from proxy.ledger import LedgerWriter
from proxy.store.base import Store
from proxy.store.records import KeyRecord, LedgerRow
from routing.decision import Decision, KeyScope

__all__ = ["Accounts", "Ticket"]


class Accounts:
    def __init__(
        self,
        store: Store,
        *,
        lease_ttl_s: float,
        ledger_interval_s: float,
        retention_days: float,
        responses_retention_days: float = 30.0,
        key_cache_s: float = KEY_CACHE_S,
        lease_idle_s: float = LEASE_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.process = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.callers = Callers(store, cache_s=key_cache_s, clock=clock, wall=wall)
        self.leases = Leases(
            store, self.process, ttl_s=lease_ttl_s, idle_s=lease_idle_s, clock=clock, wall=wall
        )
        self.ledger = LedgerWriter(
            store,
            self.leases,
            interval_s=ledger_interval_s,
            ttl_s=lease_ttl_s,
            retention_s=retention_days * 86400,
            responses_retention_s=responses_retention_days * 86400,
            clock=clock,
            wall=wall,
        )

    async def caller(self, headers: Mapping[str, str], api_key: str | None) -> KeyRecord | None:
        return await self.callers.caller(headers, api_key)

    async def keys_exist(self) -> bool:
        return await self.callers.keys_exist()

    def forget_keys(self) -> None:
        self.callers.forget_keys()

    def scope(self, key: KeyRecord) -> KeyScope:
        return self.leases.scope(key)

    async def admit(self, key: KeyRecord, decision: Decision) -> Ticket:
        return await self.leases.admit(key, decision)

    async def draw(
        self, key: KeyRecord, estimate_usd: float, tokens: int, declared: float | None = None
    ) -> Ticket:
        return await self.leases.draw(key, estimate_usd, tokens, declared)

    def record(self, row: LedgerRow) -> None:
        self.ledger.record(row)

    def start(self) -> None:
        self.ledger.start()

    async def flush(self) -> None:
        await self.ledger.flush()

    async def aclose(self) -> None:
        """Stop the ledger writer, give every lease back, write what is queued, close the
        store."""
        await self.ledger.aclose()
        await self.store.aclose()
