"""Fallback across real processes: ``perfics serve`` routes to llama-cpp-python's own
OpenAI-compatible server through the ``openai`` backend (a dead port listed first is skipped),
streams through it, and when that server is killed the next request falls back to the embedded
model with ``x-perfics-fallbacks: 1``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.backends.conftest import bundled_gguf, stop, wait_for
from tests.conftest import ServerProcess, free_port

pytestmark = pytest.mark.model
Q: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name a fruit."}]

POLICY = """
version: 1
default_task: general
reference_model: {{id: gpt-4o, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10.0}}
tasks:
  general: {{max_rounds: 0, answer_tokens: 16}}
models:
  - id: remote-smollm2
    backend: openai
    model: smollm2
    api_base: ["http://127.0.0.1:{dead}/v1", "{live}"]
    context_window: 2048
    input_usd_per_mtok: 0.01
    output_usd_per_mtok: 0.02
    quality: {{default: [5.0]}}
    options: {{connect_timeout_s: 2.0, read_timeout_s: 30.0, retry_down_after_s: 60.0}}
  - id: local-smollm2
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 2048
    input_usd_per_mtok: 0.01
    output_usd_per_mtok: 0.02
    quality: {{default: [3.0]}}
"""


@pytest.fixture
def upstream() -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf())]
    args += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    args += ["--model_alias", "smollm2", "--n_threads", str(min(2, os.cpu_count() or 1))]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.base_url = f"http://127.0.0.1:{port}/v1"  # type: ignore[attr-defined]
    wait_for(f"{proc.base_url}/models", proc, timeout=60)  # type: ignore[attr-defined]
    yield proc
    if proc.poll() is None:
        stop(proc)


def test_route_to_a_real_upstream_then_fall_back_when_it_dies(
    upstream: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(dead=free_port(), live=upstream.base_url))  # type: ignore[attr-defined]
    server = ServerProcess(policy)
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=Q,
            max_tokens=8,
            temperature=0,
        )
        assert raw.headers["x-perfics-model"] == "remote-smollm2"
        assert raw.headers["x-perfics-fallbacks"] == "0"
        assert raw.parse().choices[0].message.content

        with client.chat.completions.with_streaming_response.create(
            model="auto",
            messages=Q,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ) as response:
            assert response.headers["x-perfics-model"] == "remote-smollm2"
            chunks = list(response.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens > 0

        stop(upstream)
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=Q,
            max_tokens=8,
            temperature=0,
        )
        assert raw.headers["x-perfics-model"] == "local-smollm2"
        assert raw.headers["x-perfics-fallbacks"] == "1"
        assert raw.parse().model_extra["perfics"]["fallbacks"] == ["remote-smollm2"]  # type: ignore[index]
        ready = httpx.get(f"{server.base_url}/readyz").json()
        assert "local-smollm2" in ready["models_ready"]
    finally:
        server.stop()
