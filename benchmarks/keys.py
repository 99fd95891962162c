"""Keys on: what a budgeted, rate-limited key with the spend ledger costs a request, beside
the same proxy with keys off, in one interleaved run (``benchmarks.latency.measure``).

Targets: the stub direct; perfics with keys off (the single ``PERFICS_API_KEY``; the ledger
still records every request, off the request path); perfics with a key that has a budget, a
requests-per-minute and a tokens-per-minute limit (every request draws on the process's lease
and enters the ledger; the store is asked only when the lease runs dry, and each ledger batch
settles and renews) on SQLite, and on PostgreSQL when Debian's server packages are here; and
perfics with keys off under ``--workers 2``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import latency
from benchmarks.processes import HOST, ROOT, Server, free_port, start_stub
from benchmarks.servers import MASTER_KEY, perfics_policy


def make_key(database: str) -> str:
    """A key with a budget and limits no benchmark reaches; its secret."""
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "keys",
            "create",
            "--name",
            "bench",
            "--budget-usd",
            "1000000000",
            "--period",
            "month",
            "--rpm",
            "100000000",
            "--tpm",
            "1000000000000",
            "--database",
            database,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return made.stdout.strip()


def _perfics(name: str, policy: Path, workdir: Path, env: dict[str, str], *flags: str) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "proxy.cli", "serve", "--policy", str(policy)]
    args += ["--host", HOST, "--port", str(port), "--log-level", "warning", *flags]
    return Server(
        name, args, port=port, ready_path="/healthz", env=env, log=workdir / f"{name}.log"
    )


def run(workdir: Path, *, quick: bool, rounds: int) -> dict[str, Any]:
    stub = start_stub()
    servers: dict[str, Server] = {"direct": stub}
    headers: dict[str, dict[str, str]] = {}
    postgres = None
    policy = workdir / "keys-policy.yaml"
    policy.write_text(perfics_policy(stub.port))
    try:
        off = {"PERFICS_API_KEY": MASTER_KEY, "PERFICS_DATABASE_URL": f"sqlite:///{workdir}/off.db"}
        servers["keys-off"] = _perfics("keys-off", policy, workdir, off)
        sqlite_url = f"sqlite:///{workdir}/keys.db"
        headers["keys-sqlite"] = {"authorization": f"Bearer {make_key(sqlite_url)}"}
        servers["keys-sqlite"] = _perfics(
            "keys-sqlite", policy, workdir, {"PERFICS_DATABASE_URL": sqlite_url}
        )
        sys.path.insert(0, str(ROOT))
        from tests.postgres_server import PostgresServer, bindir

        found = bindir()
        if found is not None:
            postgres = PostgresServer(found)
            pg_url = postgres.database("bench")
            headers["keys-postgres"] = {"authorization": f"Bearer {make_key(pg_url)}"}
            servers["keys-postgres"] = _perfics(
                "keys-postgres", policy, workdir, {"PERFICS_DATABASE_URL": pg_url}
            )
        workers_env = {**off, "PERFICS_DATABASE_URL": f"sqlite:///{workdir}/workers.db"}
        servers["workers-2"] = _perfics("workers-2", policy, workdir, workers_env, "--workers", "2")
        scale = 4 if quick else 1
        results: dict[str, Any] = {}
        for scenario in (
            latency.Scenario("non-streaming", False, 1, 2000 // scale, 100),
            latency.Scenario("non-streaming", False, 16, 6000 // scale, 320),
        ):
            print(f"keys: {scenario.name}, c={scenario.concurrency} ...", flush=True)
            results[scenario.key] = asyncio.run(latency.measure(servers, scenario, rounds, headers))
        return results
    finally:
        for server in reversed(servers.values()):
            server.stop()
        if postgres is not None:
            postgres.stop()


def table(results: dict[str, Any]) -> str:
    c1, c16 = results["json-c1"], results["json-c16"]
    base1, base16 = c1["keys-off"], c16["keys-off"]
    lines = [
        "| target | added median ms, c=1 | vs keys off | req/s, c=16 | vs keys off | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name in c1:
        if name == "direct":
            continue
        a, b = c1[name], c16[name]
        lines.append(
            f"| {name} | {a['added_median_ms']:.3f} | "
            f"{a['added_median_ms'] - base1['added_median_ms']:+.3f} ms | {b['rps']:.0f} | "
            f"{b['rps'] / base16['rps']:.2f}x | {a['errors'] + b['errors']} |"
        )
    return "\n".join(lines)
