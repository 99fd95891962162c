"""Shared fixtures: free ports, a real ``perfics serve`` process on the bundled model, and a
real uvicorn server in this process around scripted backends."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import uvicorn

from proxy.app import create_app
from proxy.backends.base import Backend
from proxy.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
POLICIES = Path(__file__).resolve().parent / "policies"


def pytest_configure(config: pytest.Config) -> None:
    """Every server the tests start, in this process or as a child, keeps its keys and ledger
    in one scratch SQLite file unless the test names its own (tests that make keys must: a
    key in the shared file would close every other test's server)."""
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"perfics-tests-{os.getpid()}.db"
    for stale in (scratch, *(scratch.with_name(scratch.name + s) for s in ("-wal", "-shm"))):
        stale.unlink(missing_ok=True)  # a file of an earlier run whose process had this pid
    os.environ.setdefault("PERFICS_DATABASE_URL", f"sqlite:///{scratch}")


# Fixtures that start a server (a process: perfics, the stub upstream, llama.cpp's server; or
# uvicorn in this process), load the bundled model, or need PostgreSQL or a browser. A test
# that uses one, or runs against PostgreSQL through a parametrized store, is marked ``heavy``:
# `make check` leaves it out. A test that starts one itself carries the mark in its module.
HEAVY_FIXTURES = frozenset(
    {
        *("model_server", "llama_server", "backend", "generator", "embedded"),
        *("stub", "stub2", "stub_base", "upstream", "served", "server", "servers", "pair"),
        *("default_server", "greedy", "exposed", "fuzzed", "postgres", "browser"),
        *("service", "selecting", "traced", "tools_service", "default_named"),
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgresql" in callspec.params.values()
        if on_postgres or HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.heavy)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


class ServerProcess:
    """``perfics serve`` as a child process, ready when ``ready`` answers 200. Its stderr (the
    JSON log) goes to ``stderr_path``; ``flags`` become ``--flag value`` arguments."""

    def __init__(
        self,
        policy: Path,
        env: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        log_level: str = "warning",
        ready: str = "/readyz",
        stderr_path: Path | None = None,
        preexec: Callable[[], None] | None = None,
        **flags: str,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "proxy.cli", "serve", "--policy", str(policy)]
        args += ["--host", host, "--port", str(self.port)]
        for name, value in flags.items():
            args += [f"--{name.replace('_', '-')}", value]
        full_env = {**os.environ, "PERFICS_LOG_LEVEL": log_level, **(env or {})}
        self.stderr_path = stderr_path or (
            Path(os.environ.get("TMPDIR", "/tmp")) / f"perfics-{self.port}.log"
        )
        self.stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            preexec_fn=preexec,
        )
        wait_ready(f"{self.base_url}{ready}", self.proc)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@pytest.fixture(scope="session")
def model_server() -> Iterator[ServerProcess]:
    """The real service on the real bundled SmolLM2, with a small queue."""
    server = ServerProcess(POLICIES / "smollm2.yaml", queue_size="2")
    yield server
    server.stop()


class InProcessServer:
    """uvicorn serving ``create_app`` with injected backends, on a thread, on 127.0.0.1."""

    def __init__(self, policy: Path, backends: Mapping[str, Backend], **settings: object) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = create_app(
            Settings(policy=str(policy), port=self.port, **settings),  # type: ignore[arg-type]
            backends=backends,
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.thread.start()
        wait_ready(f"{self.base_url}/healthz", timeout=20)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A real PostgreSQL server on 127.0.0.1 for the session (skipped, loudly, when Debian's
    server packages are missing)."""
    from tests.postgres_server import PostgresServer, bindir

    found = bindir()
    if found is None:
        pytest.skip("PostgreSQL server packages missing: `pg_config --bindir` has no initdb/pg_ctl")
    server = PostgresServer(found)
    yield server
    server.stop()
