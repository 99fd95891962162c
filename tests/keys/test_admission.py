"""Admission in one process against a store that answers slowly (a database across a network):
a burst that finds the key's lease empty must wait for one grant and share it, not have each
request ask the store alone and be refused once the first grants hold what is left."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from proxy.accounts import Accounts, Ticket
from proxy.errors import KeyStoreUnavailable, QuotaExceeded, RateLimited
from proxy.keys import KeyLimits, create_key
from proxy.store.base import Store, StoreUnavailable
from proxy.store.connect import open_store, upgrade
from proxy.store.records import Grant, LeaseRequest
from routing.decision import Decision, RequestFacts, decide
from routing.policy_loader import load_policy
from tests.keys.conftest import keys_policy

STORE_DELAY_S = 0.05


class SlowStore:
    """The real SQLite store, with every lease call taking ``STORE_DELAY_S`` longer (and
    failing as a database that went away would, once ``down``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.lease_calls = 0
        self.down = False

    async def lease(self, request: LeaseRequest) -> Grant:
        self.lease_calls += 1
        await asyncio.sleep(STORE_DELAY_S)
        if self.down:
            raise StoreUnavailable("connection refused")
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


async def burst(
    database: str, decision: Decision, limits: KeyLimits, *, down: bool = False
) -> tuple[int, list[Ticket | BaseException]]:
    """100 concurrent admissions for a new key with ``limits``: the store's lease calls and
    the outcomes (tickets or the errors raised)."""
    store = SlowStore(await open_store(database))
    key, _ = await create_key(store, "team", limits)  # type: ignore[arg-type]
    accounts = Accounts(store, lease_ttl_s=60, ledger_interval_s=1, retention_days=1)  # type: ignore[arg-type]
    store.down = down
    try:
        outcomes = await asyncio.gather(
            *(accounts.admit(key, decision) for _ in range(100)), return_exceptions=True
        )
        return store.lease_calls, outcomes
    finally:
        store.down = False
        await accounts.aclose()


def test_a_burst_on_an_empty_lease_shares_one_grant(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/admission.db"
    upgrade(database)
    decision = a_decision(tmp_path)
    limits = KeyLimits(budget_usd=30 * decision.plan.estimated_cost_usd)
    calls, outcomes = asyncio.run(burst(database, decision, limits))
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, QuotaExceeded) for o in refused), refused[:1]
    assert len(outcomes) - len(refused) == 30  # what the budget holds, no more, no fewer
    # One grant for the burst (16 estimates), one for the rest of the budget; the requests
    # still waiting are refused on that answer, without asking again.
    assert calls == 2


@pytest.mark.slow
def test_a_burst_over_the_rate_limit_asks_the_store_once_per_grant(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/admission.db"
    upgrade(database)
    calls, outcomes = asyncio.run(burst(database, a_decision(tmp_path), KeyLimits(rpm=40)))
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, RateLimited) for o in refused), refused[:1]
    assert len(outcomes) - len(refused) == 40
    # Grants of 5% of the limit (2 requests): 20 of them, then one refusal shared by the rest.
    assert calls == 21


def test_a_burst_against_a_store_that_is_down_waits_for_one_failure(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/admission.db"
    upgrade(database)
    decision = a_decision(tmp_path)
    limits = KeyLimits(budget_usd=100.0)
    calls, outcomes = asyncio.run(burst(database, decision, limits, down=True))
    assert all(isinstance(o, KeyStoreUnavailable) for o in outcomes), outcomes[:1]
    # The first call was asked before the others came; the second, asked after, answers them
    # all: two calls, not 100 timeouts one after another.
    assert calls == 2


def test_a_request_cancelled_while_asking_leaves_the_others_to_ask(tmp_path: Path) -> None:
    """The second request asks the store (the first took what the lease held); its client goes
    away while it waits. The third, waiting behind it, asks for itself and gets the store's
    real answer (the budget is spent), not an answer that never came."""
    database = f"sqlite:///{tmp_path}/admission.db"
    upgrade(database)
    decision = a_decision(tmp_path)
    budget = 1.5 * decision.plan.estimated_cost_usd  # one request's estimate, and a half

    async def scenario() -> list[BaseException | object]:
        store = SlowStore(await open_store(database))
        key, _ = await create_key(store, "team", KeyLimits(budget_usd=budget))  # type: ignore[arg-type]
        accounts = Accounts(store, lease_ttl_s=60, ledger_interval_s=1, retention_days=1)  # type: ignore[arg-type]
        try:
            requests = [asyncio.ensure_future(accounts.admit(key, decision)) for _ in range(3)]
            await asyncio.sleep(STORE_DELAY_S * 1.5)  # the first admitted, the second asking
            requests[1].cancel()
            return await asyncio.gather(*requests, return_exceptions=True)
        finally:
            await accounts.aclose()

    first, second, third = asyncio.run(scenario())
    assert isinstance(first, Ticket)
    assert isinstance(second, asyncio.CancelledError)
    assert isinstance(third, QuotaExceeded), third
