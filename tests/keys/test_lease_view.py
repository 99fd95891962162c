"""What a process sees its key has left, against what the store has left: a lease's view must
follow the store once a ledger batch settles requests that cost less than their estimates,
once another process gives back what it held, and once the key's budget is raised. Before each
batch a view may be low (requests not yet settled hold their estimates); after it, a key with
budget left is never refused on that view. One process's ``Accounts`` over the real store, on
SQLite and on PostgreSQL; batches are written by calling ``flush`` (no writer, no sleeps)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from proxy.accounts import Accounts, Ticket
from proxy.errors import QuotaExceeded
from proxy.keys import KeyLimits, create_key, update_key
from proxy.store.base import Store
from proxy.store.connect import open_store, upgrade
from proxy.store.records import KeyRecord, LedgerRow
from routing.decision import Decision, RequestFacts, decide
from routing.policy import Policy
from routing.policy_loader import load_policy
from tests.keys.conftest import keys_policy
from tests.keys.test_admission import a_decision
from tests.postgres_server import PostgresServer

ESTIMATES = 10  # the key's budget: ten of the plan's estimates
FACTS = RequestFacts(  # the request of ``a_decision``
    model="auto",
    headers={},
    perfics=None,
    last_user_text="What is 2+2?",
    prompt_tokens=20,
    max_tokens=None,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/view.db"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = postgres.database(f"view_{tmp_path.name[-20:].lower().replace('-', '_')}")
    upgrade(url)
    return url


def accounts_on(store: Store) -> Accounts:
    return Accounts(store, lease_ttl_s=60, ledger_interval_s=1, retention_days=1)


def row(key: KeyRecord, ticket: Ticket, cost_usd: float, n: int) -> LedgerRow:
    """The ledger row of an answered request that drew ``ticket`` and cost ``cost_usd``."""
    return LedgerRow(
        time=0.0,
        request_id=f"r{n}",
        key_id=key.id,
        model="up",
        task="general",
        rounds=2,
        stop_reason="max_rounds",
        prompt_tokens=7,
        completion_tokens=3,
        cost_usd=cost_usd,
        reference_cost_usd=None,
        latency_ms=1,
        status=200,
        fallbacks=0,
        stream=False,
        lease_id=ticket.lease_id,
        reserved_usd=ticket.amount_usd,
        period=ticket.period,
        window=ticket.window,
        tokens_estimated=ticket.tokens_estimated,
    )


async def remaining(store: Store, key: KeyRecord) -> float:
    """What the store says the key has left (``perfics keys list``'s remaining_usd)."""
    (usage,) = [u for u in await store.keys(time.time()) if u.key.id == key.id]
    assert usage.remaining_usd is not None
    return usage.remaining_usd


async def admit_until_refused(accounts: Accounts, key: KeyRecord, plan: Decision) -> list[Ticket]:
    tickets: list[Ticket] = []
    while len(tickets) <= ESTIMATES:
        try:
            tickets.append(await accounts.admit(key, plan))
        except QuotaExceeded:
            return tickets
    pytest.fail(f"{len(tickets)} requests admitted, none refused")


def replan(policy: Policy, accounts: Accounts, key: KeyRecord) -> Decision:
    """The plan the proxy makes for the key's next request: within what the key has left as
    this process sees it (``QuotaExhausted`` when that pays for no plan)."""
    return decide(policy, FACTS, scope=accounts.scope(key))


def test_settled_requests_give_the_view_back_what_they_did_not_spend(
    database: str, tmp_path: Path
) -> None:
    """The issue-21 burst, in one process: the first grant takes the key's whole budget, the
    requests draw their estimates until nothing is left, then settle at a tenth of them. The
    next request must be planned within what the store has left, not refused on the view the
    burst left behind."""
    policy = load_policy(keys_policy(tmp_path, "http://127.0.0.1:9/v1"))
    plan = a_decision(tmp_path)
    estimate = plan.plan.estimated_cost_usd

    async def scenario() -> Ticket:
        store = await open_store(database)
        key, _ = await create_key(store, "t", KeyLimits(budget_usd=ESTIMATES * estimate, rpm=30))
        accounts = accounts_on(store)
        try:
            tickets = await admit_until_refused(accounts, key, plan)
            for n, ticket in enumerate(tickets):
                accounts.record(row(key, ticket, estimate / 10, n))
            await accounts.flush()
            left = await remaining(store, key)
            assert left == pytest.approx(ESTIMATES * estimate * 0.9)
            assert accounts.scope(key).left_usd == pytest.approx(left)
            return await accounts.admit(key, replan(policy, accounts, key))
        finally:
            await accounts.aclose()

    assert asyncio.run(scenario()).amount_usd == pytest.approx(estimate)


def test_what_another_process_gives_back_reaches_the_view(database: str, tmp_path: Path) -> None:
    """Process B holds the whole budget; A is refused and sees nothing left. B gives its lease
    back (it stops); after A's next batch, A sees the budget again and admits."""
    policy = load_policy(keys_policy(tmp_path, "http://127.0.0.1:9/v1"))
    plan = a_decision(tmp_path)
    estimate = plan.plan.estimated_cost_usd

    async def scenario() -> Ticket:
        store_a, store_b = await open_store(database), await open_store(database)
        key, _ = await create_key(store_a, "t", KeyLimits(budget_usd=ESTIMATES * estimate))
        a, b = accounts_on(store_a), accounts_on(store_b)
        try:
            await b.admit(key, plan)  # B's first grant takes the whole budget
            with pytest.raises(QuotaExceeded):
                await a.admit(key, plan)
            assert a.scope(key).left_usd == pytest.approx(0.0)
            await b.aclose()
            await a.flush()
            # B's one admitted request was never answered, so it stays charged at its estimate.
            assert a.scope(key).left_usd == pytest.approx((ESTIMATES - 1) * estimate)
            return await a.admit(key, replan(policy, a, key))
        finally:
            await a.aclose()

    assert asyncio.run(scenario()).amount_usd == pytest.approx(estimate)


def test_a_raised_budget_reaches_the_view(database: str, tmp_path: Path) -> None:
    """A key spent to its budget, then given more by its admin: after the next batch the
    process that saw it spent admits again."""
    policy = load_policy(keys_policy(tmp_path, "http://127.0.0.1:9/v1"))
    plan = a_decision(tmp_path)
    estimate = plan.plan.estimated_cost_usd

    async def scenario() -> Ticket:
        store = await open_store(database)
        key, _ = await create_key(store, "t", KeyLimits(budget_usd=ESTIMATES * estimate))
        accounts = accounts_on(store)
        try:
            for n, ticket in enumerate(await admit_until_refused(accounts, key, plan)):
                accounts.record(row(key, ticket, ticket.amount_usd, n))
            await accounts.flush()
            key = await update_key(
                store, key.id, None, KeyLimits(budget_usd=2 * ESTIMATES * estimate)
            )
            await accounts.flush()
            assert accounts.scope(key).left_usd == pytest.approx(ESTIMATES * estimate)
            return await accounts.admit(key, replan(policy, accounts, key))
        finally:
            await accounts.aclose()

    assert asyncio.run(scenario()).amount_usd == pytest.approx(estimate)
