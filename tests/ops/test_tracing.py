"""OpenTelemetry spans, exported to the SDK's in-memory exporter from a real uvicorn server
around scripted models: one span per request with the decision, one child per internal call
with its tokens and time; no prompt or answer text unless the policy logs content; and which
``OTEL_*`` settings turn tracing on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy.app import create_app
from proxy.backends.base import Completion
from proxy.backends.scripted import ScriptedBackend
from proxy.ops.tracing import Tracing, tracing_from_env
from proxy.results import Usage
from proxy.settings import Settings
from tests.conftest import POLICIES, free_port, wait_ready

SECRET = "walrus-lantern-5512"


class TracedServer:
    def __init__(self, policy: Path, backends: dict[str, ScriptedBackend]) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        app = create_app(
            Settings(policy=str(policy), port=port), backends=backends, tracing=Tracing(provider)
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.thread.start()
        wait_ready(f"{self.base_url}/healthz", timeout=20)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def two_rounds(alpha: ScriptedBackend) -> None:
    alpha.queue(
        Completion(f"draft about {SECRET}", "stop", Usage(10, 20)),
        Completion("too short", "stop", Usage(35, 5)),
        Completion("better", "stop", Usage(45, 25)),
        Completion("still vague", "stop", Usage(35, 6)),
        Completion("best answer", "stop", Usage(47, 30)),
    )


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[TracedServer, ScriptedBackend]]:
    alpha = ScriptedBackend("alpha")
    server = TracedServer(
        POLICIES / "scripted.yaml", {"alpha": alpha, "beta": ScriptedBackend("b")}
    )
    yield server, alpha
    server.stop()


def post(server: TracedServer, content: str) -> httpx.Response:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=10)


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def finished(server: TracedServer, count: int) -> tuple[ReadableSpan, ...]:
    """The exported spans once there are ``count``: the request's span ends after its last
    byte left, so the client may read the exporter before the server thread ended it."""
    deadline = time.monotonic() + 5
    while len(spans := server.exporter.get_finished_spans()) < count:
        assert time.monotonic() < deadline, [span.name for span in spans]
        time.sleep(0.01)
    return spans


def test_a_request_span_with_a_child_per_internal_call(
    traced: tuple[TracedServer, ScriptedBackend],
) -> None:
    server, alpha = traced
    two_rounds(alpha)
    response = post(server, f"Explain {SECRET}.")
    assert response.status_code == 200
    spans = by_name(finished(server, 6))
    assert set(spans) == {
        "POST /v1/chat/completions",
        "draft",
        "critique 1",
        "rewrite 1",
        "critique 2",
        "rewrite 2",
    }
    request = spans["POST /v1/chat/completions"]
    attributes = dict(request.attributes or {})
    assert attributes["perfics.model"] == response.headers["x-perfics-model"] == "alpha"
    assert attributes["perfics.task"] == "general"
    assert attributes["perfics.task_source"] == "alias"
    assert attributes["perfics.rounds_planned"] == 2
    assert attributes["perfics.rounds"] == 2
    assert attributes["perfics.stop_reason"] == "max_rounds"
    assert attributes["gen_ai.usage.input_tokens"] == 172
    assert attributes["gen_ai.usage.output_tokens"] == 86
    assert attributes["http.response.status_code"] == 200
    expected_tokens = {
        "draft": (10, 20),
        "critique 1": (35, 5),
        "rewrite 1": (45, 25),
        "critique 2": (35, 6),
        "rewrite 2": (47, 30),
    }
    assert request.start_time is not None
    assert request.end_time is not None
    for name, tokens in expected_tokens.items():
        child = spans[name]
        assert child.parent is not None
        assert child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
        child_attributes = dict(child.attributes or {})
        assert (
            child_attributes["gen_ai.usage.input_tokens"],
            child_attributes["gen_ai.usage.output_tokens"],
        ) == tokens
        assert child.start_time is not None
        assert child.end_time is not None
        assert request.start_time <= child.start_time <= child.end_time <= request.end_time
    assert spans["draft"].end_time <= spans["critique 1"].start_time  # type: ignore[operator]
    for span in spans.values():
        for value in (span.attributes or {}).values():
            assert SECRET not in str(value)


def test_content_in_spans_only_when_the_policy_logs_it(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    text = (POLICIES / "scripted.yaml").read_text()
    policy.write_text(
        text.replace(
            '  stop_phrase: "NO ISSUES"\n', '  stop_phrase: "NO ISSUES"\n  log_content: true\n'
        )
    )
    alpha = ScriptedBackend("alpha")
    server = TracedServer(policy, {"alpha": alpha, "beta": ScriptedBackend("b")})
    try:
        two_rounds(alpha)
        assert post(server, f"Explain {SECRET}.").status_code == 200
        spans = by_name(finished(server, 6))
    finally:
        server.stop()
    request = dict(spans["POST /v1/chat/completions"].attributes or {})
    assert any(SECRET in line for line in request["perfics.prompt"])  # type: ignore[operator,union-attr]
    assert list(request["perfics.answer"]) == ["best answer"]  # type: ignore[arg-type]
    assert dict(spans["critique 1"].attributes or {})["perfics.output"] == "too short"


def test_a_failed_request_ends_its_span_as_an_error(
    traced: tuple[TracedServer, ScriptedBackend],
) -> None:
    from proxy.errors import UpstreamRejected

    server, alpha = traced
    alpha.queue(UpstreamRejected("no", status_code=400))
    assert post(server, "hi").status_code == 400
    (span,) = finished(server, 1)
    assert span.status.is_ok is False
    assert dict(span.attributes or {})["http.response.status_code"] == 400


def test_calls_of_a_model_that_failed_have_spans(tmp_path: Path) -> None:
    """``alpha`` drafts, then is unavailable for its critique; ``beta`` answers. The draft was
    made (and paid for): it has its span, marked as a failed model's."""
    from proxy.errors import BackendUnavailable

    alpha, beta = ScriptedBackend("alpha"), ScriptedBackend("beta")
    server = TracedServer(POLICIES / "scripted.yaml", {"alpha": alpha, "beta": beta})
    try:
        alpha.queue(Completion("a draft", "stop", Usage(10, 20)), BackendUnavailable("down"))
        beta.queue("beta's draft", "NO ISSUES")
        response = post(server, "hi")
        assert response.status_code == 200, response.text
        assert response.headers["x-perfics-model"] == "beta"
        spans = finished(server, 4)
    finally:
        server.stop()
    request = "POST /v1/chat/completions"
    calls = [dict(span.attributes or {}) for span in spans if span.name != request]
    failed = [a for a in calls if a.get("perfics.failed_model")]
    assert [(a["gen_ai.request.model"], a["perfics.call"]) for a in failed] == [("alpha", "draft")]
    assert (failed[0]["gen_ai.usage.input_tokens"], failed[0]["gen_ai.usage.output_tokens"]) == (
        10,
        20,
    )
    assert sorted(str(a["perfics.call"]) for a in calls if a["gen_ai.request.model"] == "beta") == [
        "critique",
        "draft",
    ]


def test_the_otel_variables_turn_tracing_on() -> None:
    assert tracing_from_env({}) is None
    assert tracing_from_env({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert (
        tracing_from_env({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}) is None
    )
    console = tracing_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert console is not None
    console.shutdown()
    otlp = tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert otlp is not None
    (processor,) = otlp.provider._active_span_processor._span_processors
    assert type(processor.span_exporter).__name__ == "OTLPSpanExporter"
    otlp.shutdown()
    with pytest.raises(ValueError, match="zipkin"):
        tracing_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
