"""Keys tests: real ``perfics serve`` processes in front of the stub upstream, each test with
its own store (a SQLite file, or a database on the session's PostgreSQL server), keys made
with the real ``perfics keys`` command."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends.conftest import Stub, label
from tests.conftest import ROOT, ServerProcess

# Prices high enough that every request costs a visible amount; quality rising with rounds,
# so the planner refines.
KEYS_POLICY = """
version: 1
default_task: general
weights: {{performance: 1.0, refinement: 1.0, cost: 0.01}}
reference_model: {{id: gpt-4o, input_usd_per_mtok: 2500.0, output_usd_per_mtok: 10000.0}}
refinement:
  critique_max_tokens: 20
  template_tokens: 30
  critique_prompt: "Review it; reply {{stop_phrase}} if fine."
  rewrite_prompt: "Rewrite it."
server:
  ledger_interval_s: {ledger_interval_s}
  lease_ttl_s: {lease_ttl_s}
  key_cache_s: {key_cache_s}
  lease_idle_s: {lease_idle_s}
tasks:
  general: {{max_rounds: 2, answer_tokens: 40}}
  coding: {{max_rounds: 2, answer_tokens: 40}}
models:
  - id: up
    backend: openai
    model: stub
    api_base: "{api_base}"
    context_window: 4096
    input_usd_per_mtok: 1000.0
    output_usd_per_mtok: 2000.0
    quality: {{default: [5.0, 6.0, 7.0]}}
  - id: other
    backend: openai
    model: stub
    api_base: "{api_base}"
    context_window: 4096
    input_usd_per_mtok: 1000.0
    output_usd_per_mtok: 2000.0
    quality: {{default: [4.0, 4.5, 5.0]}}
"""


def keys_policy(
    tmp: Path,
    api_base: str,
    *,
    ledger_interval_s: float = 0.2,
    lease_ttl_s: float = 900,
    key_cache_s: float = 1.0,
    lease_idle_s: float = 1.0,
) -> Path:
    """The keys policy on ``api_base``; the defaults are the server's. A test that changes a
    key from outside the serving process passes ``key_cache_s=0``, so the change counts at
    the next request and no test waits out the cache (the burst tests keep the cache: with
    a store lookup per request, admitting a burst on a loaded machine outlasts the upstream's
    delay and early answers settle mid-burst)."""
    path = tmp / "policy.yaml"
    path.write_text(
        textwrap.dedent(
            KEYS_POLICY.format(
                api_base=api_base,
                ledger_interval_s=ledger_interval_s,
                lease_ttl_s=lease_ttl_s,
                key_cache_s=key_cache_s,
                lease_idle_s=lease_idle_s,
            )
        )
    )
    return path


def perfics(*args: str, database: str) -> subprocess.CompletedProcess[str]:
    """The real command line against ``database``."""
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args, "--database", database],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def make_key(database: str, *args: str) -> str:
    result = perfics("keys", "create", *args, database=database)
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert secret.startswith("pk-")
    assert len(secret) == 46
    return secret


class KeyedServer(ServerProcess):
    def __init__(self, policy: Path, database: str, *, workers: str | None = None) -> None:
        env = {"PERFICS_DATABASE_URL": database, "PERFICS_ADMIN_KEY": "admin-secret-1"}
        if workers is None:
            super().__init__(policy, env, ready="/healthz", log_level="info")
        else:
            super().__init__(policy, env, ready="/healthz", log_level="info", workers=workers)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.stop()


@pytest.fixture
def stub_base(upstream: Stub) -> str:
    return upstream.url(label("ok"))
