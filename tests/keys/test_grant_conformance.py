"""The store's grant is one algorithm on two databases: SQLite runs it in Python
(``proxy/store/sqlite.py``), PostgreSQL in the ``perfics_lease`` function (migration 0001).
One table of cases, each a key and a sequence of lease requests with the grant each must get,
runs against both, so the two implementations cannot drift apart unnoticed (its first run
found one drift: SQLite reported a revoked key's budget left, PostgreSQL none)."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from proxy.keys import KeyLimits, create_key, revoke_key
from proxy.store.connect import open_store, upgrade
from proxy.store.records import Grant, LeaseRequest
from tests.postgres_server import PostgresServer

NOW = 1_800_000_000.0
WINDOW = int(NOW // 60 * 60)
PERIOD = "2027-01"

BASE = LeaseRequest(
    key_id="",
    lease_id="lease-1",
    process="proc-1",
    period=PERIOD,
    need_usd=0.1,
    want_usd=0.4,
    declared_usd=None,
    window=WINDOW,
    need_requests=1,
    want_requests=1,
    need_tokens=10,
    want_tokens=10,
    now=NOW,
    ttl_s=60.0,
)


@dataclass(frozen=True)
class Step:
    """One lease request (``BASE`` with ``changes``) and the grant it must get."""

    changes: dict[str, Any]
    grant: Grant


@dataclass(frozen=True)
class Case:
    limits: KeyLimits
    steps: tuple[Step, ...]
    revoked: bool = False
    key_known: bool = True
    expires_in_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def ok(
    left: float | None, usd: float, requests: int, tokens: int, more_r: int, more_t: int
) -> Grant:
    return Grant("ok", left, usd, requests, tokens, more_r, more_t)


BUDGET = KeyLimits(budget_usd=1.0)
CASES: dict[str, Case] = {
    "a budget is held up to what is left, then refused": Case(
        BUDGET,
        (
            Step({"want_usd": 0.6}, ok(1.0, 0.6, 0, 0, 0, 0)),
            Step({"lease_id": "lease-2", "want_usd": 0.6}, ok(0.4, 0.4, 0, 0, 0, 0)),
            Step({"lease_id": "lease-3"}, Grant("budget", 0.0, 0.0, 0, 0, 0, 0)),
            Step({"lease_id": "lease-4", "need_usd": 0.0}, ok(0.0, 0.0, 0, 0, 0, 0)),
        ),
    ),
    "the same lease tops up": Case(
        BUDGET,
        (
            Step({"want_usd": 0.3}, ok(1.0, 0.3, 0, 0, 0, 0)),
            Step({"want_usd": 0.3}, ok(0.7, 0.3, 0, 0, 0, 0)),
        ),
    ),
    "a declared budget above what is left is refused as declared": Case(
        KeyLimits(budget_usd=0.5),
        (
            Step({"declared_usd": 0.6}, Grant("declared_budget", 0.5, 0.0, 0, 0, 0, 0)),
            Step({"declared_usd": 0.5}, ok(0.5, 0.4, 0, 0, 0, 0)),
        ),
    ),
    "a declared budget means nothing on a key without one": Case(
        KeyLimits(),
        (Step({"declared_usd": 1e300}, ok(None, 0.0, 0, 0, 0, 0)),),
    ),
    "requests per minute: granted up to the limit, then refused": Case(
        KeyLimits(rpm=3),
        (
            Step({"want_requests": 2}, ok(None, 0.0, 2, 10, 2, 10)),
            Step({"want_requests": 5}, ok(None, 0.0, 3, 20, 1, 10)),
            Step({}, Grant("requests", None, 0.0, 3, 20, 0, 0)),
            Step({"window": WINDOW + 60, "now": NOW + 60}, ok(None, 0.0, 1, 10, 1, 10)),
        ),
    ),
    "tokens per minute: the need must fit": Case(
        KeyLimits(tpm=100),
        (
            Step({"need_tokens": 60, "want_tokens": 80}, ok(None, 0.0, 1, 80, 1, 80)),
            Step({"need_tokens": 30}, Grant("tokens", None, 0.0, 1, 80, 0, 0)),
            Step({"need_tokens": 20, "want_tokens": 50}, ok(None, 0.0, 2, 100, 1, 20)),
        ),
    ),
    "the checks' order: requests before tokens before the budget": Case(
        KeyLimits(budget_usd=0.05, rpm=1, tpm=10),
        (
            Step({"need_usd": 0.0}, ok(0.05, 0.05, 1, 10, 1, 10)),
            Step({}, Grant("requests", 0.0, 0.0, 1, 10, 0, 0)),
            Step(
                {"window": WINDOW + 60, "need_tokens": 11},
                Grant("tokens", 0.0, 0.0, 0, 0, 0, 0),
            ),
            Step({"window": WINDOW + 60}, Grant("budget", 0.0, 0.0, 0, 0, 0, 0)),
        ),
    ),
    "a revoked key is refused before anything else": Case(
        KeyLimits(budget_usd=0.0, rpm=1),
        (Step({}, Grant("revoked", None, 0.0, 0, 0, 0, 0)),),
        revoked=True,
    ),
    "an expired key is refused": Case(
        KeyLimits(), (Step({}, Grant("revoked", None, 0.0, 0, 0, 0, 0)),), expires_in_s=-1.0
    ),
    "a key about to expire is still served": Case(
        KeyLimits(), (Step({}, ok(None, 0.0, 0, 0, 0, 0)),), expires_in_s=1.0
    ),
    "an unknown key is refused": Case(
        KeyLimits(), (Step({}, Grant("revoked", None, 0.0, 0, 0, 0, 0)),), key_known=False
    ),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/grants.db"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = postgres.database(f"grants_{abs(hash(request.node.name)) % 10**9}")
    upgrade(url)
    return url


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_grant_follows_the_table(database: str, name: str) -> None:
    asyncio.run(_run(database, CASES[name]))


async def _run(database: str, case: Case) -> None:
    store = await open_store(database)
    try:
        limits = case.limits
        if case.expires_in_s is not None:
            limits = dataclasses.replace(limits, expires_at=NOW + case.expires_in_s)
        key, _ = await create_key(store, "conformance", limits)
        if case.revoked:
            await revoke_key(store, key.id)
        key_id = key.id if case.key_known else "key_unknown"
        for number, step in enumerate(case.steps, 1):
            request = dataclasses.replace(BASE, key_id=key_id, **step.changes)
            got = await store.lease(request)
            want = step.grant
            assert (got.verdict, got.requests, got.tokens) == (
                want.verdict,
                want.requests,
                want.tokens,
            ), f"step {number}"
            assert (got.granted_requests, got.granted_tokens) == (
                want.granted_requests,
                want.granted_tokens,
            ), f"step {number}"
            assert got.usd == pytest.approx(want.usd, abs=1e-12), f"step {number}"
            if want.left_usd is None:
                assert got.left_usd is None, f"step {number}"
            else:
                assert got.left_usd == pytest.approx(want.left_usd, abs=1e-12), f"step {number}"
    finally:
        await store.aclose()
