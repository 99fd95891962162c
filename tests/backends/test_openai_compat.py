"""OpenAICompatBackend against the stub upstream, a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.backends.base import Delta, SamplingParams, collect
from proxy.backends.openai_compat import OpenAICompatBackend
from proxy.errors import BackendError, BackendTimeout, BackendUnavailable, UpstreamRejected
from proxy.logs import REQUEST_ID
from proxy.results import Usage
from tests.conftest import free_port

from .conftest import Stub, eventually, label, openai_spec

MESSAGES = [{"role": "user", "content": "hi"}]
PARAMS = SamplingParams(max_tokens=5)


@contextlib.asynccontextmanager
async def started(*bases: str, **options: Any) -> AsyncIterator[OpenAICompatBackend]:
    backend = OpenAICompatBackend(openai_spec(*bases, **options))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_complete_sends_params_key_and_reads_usage(
    stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    lab = label("ok")
    spec = openai_spec(stub.url(lab), api_key_env="STUB_KEY")
    backend = OpenAICompatBackend(spec)
    await backend.start()
    params = SamplingParams(
        max_tokens=5, temperature=0.2, stop=("x",), response_format={"type": "json_object"}
    )
    try:
        result = await backend.complete(MESSAGES, params)
    finally:
        await backend.aclose()
    assert (result.text, result.finish_reason) == ("hello from stub", "stop")
    assert result.usage == Usage(7, 3, evaluated_prompt_tokens=3)
    stats = stub.stats(lab)
    assert stats["last_auth"] == "Bearer sk-test"
    assert stats["last_body"] == {
        "model": "stub",
        "messages": MESSAGES,
        "max_tokens": 5,
        "temperature": 0.2,
        "stop": ["x"],
        "response_format": {"type": "json_object"},
    }


async def test_absent_key_variable_sends_no_authorization(stub: Stub) -> None:
    lab = label("ok")
    spec = openai_spec(stub.url(lab), api_key_env="PERFICS_NO_SUCH_VAR")
    backend = OpenAICompatBackend(spec)
    await backend.start()
    try:
        await backend.complete(MESSAGES, PARAMS)
    finally:
        await backend.aclose()
    assert stub.stats(lab)["last_auth"] is None


async def test_stream_yields_text_then_finish_and_usage(stub: Stub) -> None:
    lab = label("ok")
    async with started(stub.url(lab)) as backend:
        deltas = [d async for d in backend.stream(MESSAGES, PARAMS)]
    assert [d.text for d in deltas[:-1]] == ["hello", " from", " stub"]
    assert deltas[-1] == Delta(finish_reason="stop", usage=Usage(7, 3, 3))
    body = stub.stats(lab)["last_body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_chunk_counts_chunks(stub: Stub) -> None:
    async with started(stub.url(label("nousage"))) as backend:
        result = await collect(backend.stream(MESSAGES, PARAMS))
    assert result.text == "hello from stub"
    assert result.usage == Usage(prompt_tokens=0, completion_tokens=3)


async def test_tool_calls_whole_and_streamed(stub: Stub) -> None:
    expected = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"x": 1}'},
    }
    async with started(stub.url(label("tools"))) as backend:
        whole = await backend.complete(MESSAGES, PARAMS)
        streamed = await collect(backend.stream(MESSAGES, PARAMS))
    for result in (whole, streamed):
        assert result.tool_calls == (expected,)
        assert result.finish_reason == "tool_calls"


async def test_dead_first_replica_is_skipped_marked_down_and_retried_later(stub: Stub) -> None:
    lab = label("ok")
    dead_port = free_port()
    dead_url = f"http://127.0.0.1:{dead_port}/{lab}/v1"
    async with started(dead_url, stub.url(lab), retry_down_after_s=0.5) as backend:
        dead, live = backend.replicas
        assert (await backend.complete(MESSAGES, PARAMS)).text == "hello from stub"
        marked = dead.down_until
        assert marked is not None
        assert live.down_until is None
        assert backend.ready
        for _ in range(3):
            await backend.complete(MESSAGES, PARAMS)
        # A retried dead replica would have been marked down again, later.
        assert dead.down_until == marked
        assert stub.stats(lab)["requests"] == 4

        revived = Stub(port=dead_port)
        try:
            await asyncio.sleep(0.6)
            for _ in range(2):  # ties alternate, so one of the two probes the revived replica
                await backend.complete(MESSAGES, PARAMS)
            assert dead.down_until is None
            assert revived.stats(lab)["requests"] == 1
        finally:
            revived.stop()


async def test_every_replica_down_is_unavailable_and_not_ready() -> None:
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    async with started(*urls, retry_down_after_s=30) as backend:
        assert backend.ready
        with pytest.raises(BackendUnavailable) as caught:
            await backend.complete(MESSAGES, PARAMS)
        assert caught.value.status_code == 503
        assert caught.value.retryable
        assert not backend.ready
        started_at = time.perf_counter()
        with pytest.raises(BackendUnavailable):
            await collect(backend.stream(MESSAGES, PARAMS))
        assert time.perf_counter() - started_at < 0.05
        assert all(r.down_until is not None for r in backend.replicas)


@pytest.mark.parametrize(
    ("bound", "sent"),
    [
        ("req_0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
        ("6f1c2a9e-8d1b-4c3e-9f00-1234567890ab", "6f1c2a9e-8d1b-4c3e-9f00-1234567890ab"),
        ("trace-abc.123", None),  # llama-cpp-python's server answers 400 to a non-UUID id
    ],
)
async def test_request_id_goes_upstream_only_as_a_uuid(
    stub: Stub, bound: str, sent: str | None
) -> None:
    lab = label("ok")
    token = REQUEST_ID.set(bound)
    try:
        async with started(stub.url(lab)) as backend:
            await backend.complete(MESSAGES, PARAMS)
    finally:
        REQUEST_ID.reset(token)
    assert stub.stats(lab)["last_request_id"] == sent


async def test_not_started_is_unavailable(stub: Stub) -> None:
    backend = OpenAICompatBackend(openai_spec(stub.url(label("ok"))))
    assert not backend.ready
    with pytest.raises(BackendUnavailable):
        await backend.complete(MESSAGES, PARAMS)


async def test_upstream_5xx_moves_the_call_to_the_models_next_replica(
    stub: Stub, stub2: Stub
) -> None:
    # The same model's healthy replica answers before the pipeline would fall back to another
    # model; the failing replica answered, so it is not marked down.
    failing, other = label("e500"), label("ok")
    async with started(stub.url(failing), stub2.url(other)) as backend:
        for call in (backend.complete(MESSAGES, PARAMS), collect(backend.stream(MESSAGES, PARAMS))):
            completion = await call
            assert completion.text
        assert backend.replicas[0].down_until is None
    assert stub.stats(failing)["requests"] >= 1
    assert stub2.stats(other)["requests"] == 2


async def test_a_replica_that_dies_mid_request_hands_the_call_to_the_next(
    stub: Stub, stub2: Stub
) -> None:
    dying, other = label("drop"), label("ok")
    async with started(stub.url(dying), stub2.url(other)) as backend:
        completion = await backend.complete(MESSAGES, PARAMS)
        streamed = await collect(backend.stream(MESSAGES, PARAMS))
    assert completion.text == streamed.text == "hello from stub"
    assert stub.stats(dying)["requests"] >= 1  # the dying replica was tried first
    assert stub2.stats(other)["requests"] == 2


async def test_upstream_5xx_on_every_replica_is_retryable(stub: Stub, stub2: Stub) -> None:
    first, second = label("e500"), label("e503")
    async with started(stub.url(first), stub2.url(second)) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.complete(MESSAGES, PARAMS)
        assert all(r.down_until is None for r in backend.replicas)
    assert not isinstance(caught.value, UpstreamRejected)
    assert caught.value.retryable
    assert caught.value.status_code == 502
    assert stub.stats(first)["requests"] == stub2.stats(second)["requests"] == 1


@pytest.mark.parametrize("status", [400, 422])
async def test_upstream_4xx_is_rejected_with_its_message_and_status(
    stub: Stub, status: int
) -> None:
    async with started(stub.url(label(f"e{status}"))) as backend:
        with pytest.raises(UpstreamRejected) as caught:
            await collect(backend.stream(MESSAGES, PARAMS))
    assert caught.value.message == f"stub says {status}"
    assert caught.value.status_code == status
    assert not caught.value.retryable


@pytest.mark.parametrize("status", [401, 404, 429])
async def test_upstream_refusing_the_proxy_is_retryable(stub: Stub, status: int) -> None:
    async with started(stub.url(label(f"e{status}"))) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.complete(MESSAGES, PARAMS)
    assert not isinstance(caught.value, UpstreamRejected)
    assert caught.value.retryable


async def test_read_timeout_is_backend_timeout(stub: Stub) -> None:
    async with started(stub.url(label("slow1")), read_timeout_s=0.2) as backend:
        started_at = time.perf_counter()
        with pytest.raises(BackendTimeout) as caught:
            await backend.complete(MESSAGES, PARAMS)
        assert time.perf_counter() - started_at < 0.8
        assert backend.replicas[0].down_until is None
    assert caught.value.status_code == 504
    assert caught.value.retryable


async def test_malformed_json_is_backend_error(stub: Stub) -> None:
    async with started(stub.url(label("badjson"))) as backend:
        with pytest.raises(BackendError, match="not JSON"):
            await backend.complete(MESSAGES, PARAMS)


@pytest.mark.parametrize("pause", [False, True], ids=["while-reading", "between-deltas"])
async def test_cancelling_a_stream_closes_the_upstream_connection(stub: Stub, pause: bool) -> None:
    lab = label("endless")
    received = asyncio.Event()

    async def consume(backend: OpenAICompatBackend) -> None:
        count = 0
        async for _ in backend.stream(MESSAGES, PARAMS):
            count += 1
            if count == 3:
                received.set()
                if pause:  # cancelled here, the stream is left suspended at its yield
                    await asyncio.sleep(30)

    async with started(stub.url(lab)) as backend:
        task = asyncio.create_task(consume(backend))
        await asyncio.wait_for(received.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: stub.stats(lab)["disconnects"] > 0, within=3)
        assert backend.replicas[0].outstanding == 0
    stats = stub.stats(lab)
    assert stats["disconnects"] == 1
    assert stats["concurrent"] == 0


async def test_least_outstanding_balancing(stub: Stub, stub2: Stub) -> None:
    even_a, even_b = label("slow0.2"), label("slow0.2")
    async with started(stub.url(even_a), stub2.url(even_b)) as backend:
        await asyncio.gather(*(backend.complete(MESSAGES, PARAMS) for _ in range(10)))
    assert stub.stats(even_a)["requests"] == stub2.stats(even_b)["requests"] == 5
    assert stub.stats(even_a)["max_concurrent"] == 5

    slow, fast = label("slow1"), label("ok")
    async with started(stub.url(slow), stub2.url(fast)) as backend:
        long_call = asyncio.create_task(backend.complete(MESSAGES, PARAMS))
        await asyncio.sleep(0)  # the long call has taken the first replica
        for _ in range(6):
            await backend.complete(MESSAGES, PARAMS)
        await long_call
    assert stub.stats(slow)["requests"] == 1
    assert stub2.stats(fast)["requests"] == 6


EXHAUSTED = """
import asyncio, os, resource, sys
from proxy.backends.openai_compat import OpenAICompatBackend
from proxy.backends.base import SamplingParams
from proxy.logs import REQUEST_ID
from proxy.errors import BackendUnavailable
from tests.backends.conftest import openai_spec

async def main() -> None:
    backend = OpenAICompatBackend(openai_spec(sys.argv[1]))
    await backend.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    hogs = []
    try:
        while True:
            hogs.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    try:
        await backend.complete([{"role": "user", "content": "hi"}], SamplingParams())
        print("answered")
    except BackendUnavailable:
        print("unavailable", backend.replicas[0].down_until is None)
    for fd in hogs:
        os.close(fd)
    reply = await backend.complete([{"role": "user", "content": "hi"}], SamplingParams())
    print("after", reply.text)
    await backend.aclose()

asyncio.run(main())
"""


def test_the_proxys_own_descriptor_exhaustion_does_not_mark_a_replica_down(stub: Stub) -> None:
    # Out of file descriptors, the proxy cannot connect: a 503, but the healthy replica stays
    # up, and answers as soon as descriptors are free again.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", EXHAUSTED, stub.url(label("ok"))],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    printed = [line for line in done.stdout.splitlines() if not line[:4].isdigit()]  # no logs
    assert printed == ["unavailable True", "after hello from stub"], done.stdout + done.stderr
