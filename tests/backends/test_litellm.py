"""LiteLLMBackend against the stub upstream (a real local OpenAI-compatible server), and the
privacy requirement: litellm, imported and used through this backend, connects to nothing but
the upstream the policy names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxy.backends.base import Delta, SamplingParams, collect
from proxy.backends.litellm_backend import LiteLLMBackend
from proxy.errors import BackendError, BackendTimeout, BackendUnavailable, UpstreamRejected
from proxy.results import Usage
from tests.conftest import free_port

from .conftest import Stub, label, litellm_spec

MESSAGES = [{"role": "user", "content": "hi"}]
PARAMS = SamplingParams(max_tokens=5, temperature=0.0)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def placeholder_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-local")


async def started(base: str, **options: object) -> LiteLLMBackend:
    backend = LiteLLMBackend(litellm_spec(base, "openai/stub", api_key_env="STUB_KEY", **options))
    await backend.start()
    return backend


async def test_complete_and_stream(stub: Stub) -> None:
    lab = label("ok")
    backend = await started(stub.url(lab))
    assert backend.ready
    whole = await backend.complete(MESSAGES, PARAMS)
    deltas = [d async for d in backend.stream(MESSAGES, PARAMS)]
    await backend.aclose()
    assert (whole.text, whole.finish_reason) == ("hello from stub", "stop")
    assert whole.usage == Usage(7, 3, 3)
    assert "".join(d.text for d in deltas) == "hello from stub"
    assert deltas[-1] == Delta(finish_reason="stop", usage=Usage(7, 3, 3))
    stats = stub.stats(lab)
    assert stats["last_auth"] == "Bearer sk-local"
    assert stats["last_body"]["model"] == "stub"
    assert stats["last_body"]["stream_options"] == {"include_usage": True}


async def test_tool_calls(stub: Stub) -> None:
    backend = await started(stub.url(label("tools")))
    whole = await backend.complete(MESSAGES, PARAMS)
    streamed = await collect(backend.stream(MESSAGES, PARAMS))
    expected = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"x": 1}'},
    }
    for result in (whole, streamed):
        assert result.finish_reason == "tool_calls"
        assert [dict(call) for call in result.tool_calls] == [expected]


@pytest.mark.parametrize(
    ("behaviour", "error", "retryable"),
    [
        ("e400", UpstreamRejected, False),
        ("e401", BackendError, True),
        ("e429", BackendError, True),
        ("e500", BackendError, True),
        ("e503", BackendUnavailable, True),
    ],
)
async def test_errors_are_translated(
    stub: Stub, behaviour: str, error: type[BackendError], retryable: bool
) -> None:
    backend = await started(stub.url(label(behaviour)))
    with pytest.raises(error) as caught:
        await backend.complete(MESSAGES, PARAMS)
    assert caught.value.retryable is retryable
    if error is BackendError:
        assert not isinstance(caught.value, UpstreamRejected | BackendUnavailable)
    if error is UpstreamRejected:
        assert caught.value.status_code == 400
        assert "stub says 400" in caught.value.message


@pytest.mark.slow
async def test_refused_connection_is_unavailable() -> None:
    backend = await started(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(BackendUnavailable):
        await collect(backend.stream(MESSAGES, PARAMS))


async def test_timeout_is_backend_timeout(stub: Stub) -> None:
    backend = await started(stub.url(label("slow1")), timeout_s=0.2)
    with pytest.raises(BackendTimeout):
        await backend.complete(MESSAGES, PARAMS)


AUDIT = textwrap.dedent(
    """
    import asyncio, json, sys

    destinations = []

    def audit(event, args):
        if event == "socket.connect":
            address = args[1]
            destinations.append(list(address[:2]) if isinstance(address, tuple) else address)
        elif event == "socket.getaddrinfo":
            host = args[0].decode() if isinstance(args[0], bytes) else args[0]
            destinations.append([host, int(args[1]) if args[1] is not None else None])

    sys.addaudithook(audit)

    from routing.policy import LiteLLMOptions, ModelSpec
    from proxy.backends.base import SamplingParams, collect
    from proxy.backends.litellm_backend import LiteLLMBackend

    async def main():
        spec = ModelSpec(id="m", backend="litellm", model="openai/stub", api_base=(sys.argv[1],),
                         api_key_env="STUB_KEY", context_window=2048, options=LiteLLMOptions())
        backend = LiteLLMBackend(spec)
        await backend.start()
        params = SamplingParams(max_tokens=5)
        whole = await backend.complete([{"role": "user", "content": "hi"}], params)
        streamed = await collect(backend.stream([{"role": "user", "content": "hi"}], params))
        await backend.aclose()
        await asyncio.sleep(1.0)  # room for any background logging or telemetry to fire
        return [whole.text, streamed.text]

    texts = asyncio.run(main())
    print(json.dumps({"texts": texts, "destinations": destinations}))
    """
)


def test_litellm_connects_to_nothing_but_the_named_upstream(stub: Stub, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LITELLM")}
    path = [p for p in sys.path if p] + [str(ROOT)]
    env |= {"PYTHONPATH": os.pathsep.join(path), "STUB_KEY": "sk-local"}
    done = subprocess.run(
        [sys.executable, "-c", AUDIT, stub.url(label("ok"))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["texts"] == ["hello from stub", "hello from stub"]
    assert report["destinations"], "the audit hook saw no connection at all"
    assert {tuple(d) for d in report["destinations"]} == {("127.0.0.1", stub.port)}
