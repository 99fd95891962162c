"""Admission in one process against a store that answers slowly (a database across a network):
a burst that finds the key's lease empty must wait for one grant and share it, not have each
request ask the store alone and be refused once the first grants hold what is left."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from proxy.accounts import Accounts
from proxy.errors import QuotaExceeded
from proxy.keys import KeyLimits, create_key
from proxy.store.base import Store
from proxy.store.records import Grant, LeaseRequest
from proxy.store.schema import open_store, upgrade
from routing.decision import Decision, RequestFacts, decide
from routing.policy import load_policy
from tests.keys.conftest import keys_policy

STORE_DELAY_S = 0.05


class SlowStore:
    """The real SQLite store, with every lease call taking ``STORE_DELAY_S`` longer."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.lease_calls = 0

    async def lease(self, request: LeaseRequest) -> Grant:
        self.lease_calls += 1
        await asyncio.sleep(STORE_DELAY_S)
        return await self._store.lease(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def a_decision(tmp_path: Path) -> Decision:
    policy = load_policy(keys_policy(tmp_path, "http://127.0.0.1:9/v1"))
    facts = RequestFacts(
        model="auto",
        headers={},
        perfics=None,
        last_user_text="What is 2+2?",
        prompt_tokens=20,
        max_tokens=None,
    )
    return decide(policy, facts)


def test_a_burst_on_an_empty_lease_shares_one_grant(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/admission.db"
    upgrade(database)
    decision = a_decision(tmp_path)
    estimate = decision.plan.estimated_cost_usd

    async def scenario() -> tuple[int, list[BaseException | object]]:
        store = SlowStore(await open_store(database))
        key, _ = await create_key(store, "team", KeyLimits(budget_usd=30 * estimate))  # type: ignore[arg-type]
        accounts = Accounts(store, lease_ttl_s=60, ledger_interval_s=1, retention_days=1)  # type: ignore[arg-type]
        try:
            outcomes = await asyncio.gather(
                *(accounts.admit(key, decision) for _ in range(100)), return_exceptions=True
            )
        finally:
            await accounts.aclose()
        return store.lease_calls, outcomes

    calls, outcomes = asyncio.run(scenario())
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, QuotaExceeded) for o in refused), refused[:1]
    # Thirty estimates fit the budget (29 where rounding leaves the last one a hair short).
    assert 29 <= len(outcomes) - len(refused) <= 30
    # One grant for the burst (16 estimates), one for the rest of the budget; the requests
    # still waiting are refused on that answer, without asking again.
    assert calls == 2
