"""The store on both databases: migrations from an empty database and from the previous
version, and what happens when the database cannot be reached, at start and while serving."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from proxy.store.connect import open_store, upgrade
from tests.backends.conftest import Stub, label
from tests.conftest import ROOT
from tests.keys.conftest import KeyedServer, keys_policy, make_key, perfics
from tests.keys.test_budget_concurrency import query
from tests.postgres_server import PostgresServer

ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 2+2?"}]


MIGRATIONS = ROOT / "proxy" / "store" / "migrations" / "versions"
HEAD = max(path.name.split("_", 1)[0] for path in MIGRATIONS.glob("[0-9]*_*.py"))


def databases(tmp_path: Path, postgres: PostgresServer, name: str) -> list[str]:
    return [f"sqlite:///{tmp_path}/{name}.db", postgres.database(name)]


def test_upgrade_from_empty_and_from_the_previous_version(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    assert HEAD >= "0004"
    for database in databases(tmp_path, postgres, "migrations"):
        upgrade(database, "0001")
        assert query(database, "SELECT version_num FROM perfics_schema_version") == [("0001",)]
        # A key made under 0001 survives the upgrade and works after it.
        secret = make_key(database, "--name", "kept")  # the command upgrades to head first
        assert query(database, "SELECT version_num FROM perfics_schema_version") == [(HEAD,)]
        assert query(database, "SELECT name, max_samples FROM api_keys") == [("kept", None)]
        assert query(database, "SELECT COUNT(*) FROM ledger") == [(0,)]
        upgrade(database)  # idempotent

        async def lookup(database: str, secret: str) -> str | None:
            from proxy.keys import hash_secret

            store = await open_store(database)
            try:
                key = await store.key_by_hash(hash_secret(secret))
            finally:
                await store.aclose()
            return key.name if key else None

        assert asyncio.run(lookup(database, secret)) == "kept"


def test_a_keys_sample_cap_is_kept_changed_and_cleared(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    for database in databases(tmp_path, postgres, "samples"):
        upgrade(database, "0003")
        make_key(database, "--name", "before")  # upgrades to head: the column is added
        make_key(database, "--name", "capped", "--max-samples", "4", "--max-rounds", "1")

        def listed(database: str = database) -> dict[str, object]:
            views = json.loads(perfics("keys", "list", "--json", database=database).stdout)
            return {view["name"]: view["max_samples"] for view in views}

        assert listed() == {"before": None, "capped": 4}
        changed = perfics("keys", "update", "capped", "--max-samples", "2", database=database)
        assert changed.returncode == 0, changed.stderr
        assert listed() == {"before": None, "capped": 2}
        cleared = perfics("keys", "update", "capped", "--clear", "max_samples", database=database)
        assert cleared.returncode == 0, cleared.stderr
        assert listed() == {"before": None, "capped": None}
        assert query(database, "SELECT max_rounds FROM api_keys WHERE name = 'capped'") == [(1,)]
        refused = perfics(
            "keys", "create", "--name", "bad", "--max-samples", "-1", database=database
        )
        assert refused.returncode == 2
        assert "max_samples must be 0 or more" in refused.stderr


def test_an_unreachable_database_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    policy = keys_policy(tmp_path, "http://127.0.0.1:9/v1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "serve",
            "--policy",
            str(policy),
            "--port",
            "0",
            "--database",
            "postgresql://perfics:hunter2@127.0.0.1:9/nothing",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot use the database postgresql://perfics:***@127.0.0.1:9/nothing" in result.stderr
    assert "hunter2" not in result.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "keys", "list", "--database", "mysql://x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "unsupported database URL" in bad.stderr


def test_losing_the_database_while_serving_fails_closed_for_keys(
    tmp_path: Path, upstream: Stub
) -> None:
    pg_root = tmp_path / "pg"
    pg_root.mkdir()
    from tests.postgres_server import bindir

    found = bindir()
    if found is None:
        pytest.skip("PostgreSQL server packages missing")
    own = PostgresServer(found)  # its own server: this test stops it
    try:
        database = own.database("lost")
        secret = make_key(database, "--name", "team", "--budget-usd", "50")
        server = KeyedServer(
            keys_policy(tmp_path, upstream.url(label("ok")), key_cache_s=0.0), database
        )
        try:
            sdk = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=secret, max_retries=0)
            assert sdk.chat.completions.create(model="auto", messages=ASK).choices
            own.stop()
            with pytest.raises(openai.InternalServerError) as refused:
                sdk.chat.completions.create(model="auto", messages=ASK)
            assert refused.value.status_code == 503
            assert refused.value.code == "store_unavailable"
            assert server.alive
        finally:
            server.stop()
    finally:
        own.stop()
