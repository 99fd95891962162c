"""The service end to end through the OpenAI SDK, with scripted models behind a real uvicorn
server: hidden rounds, outcome headers and the ``perfics`` body object, cost arithmetic,
traces, streaming of the final answer, fallback, budgets and hot reload."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from proxy.backends.base import Completion
from proxy.backends.scripted import ScriptedBackend
from proxy.errors import BackendError, BackendUnavailable, UpstreamRejected
from proxy.results import Usage
from routing.cost import format_usd
from tests.conftest import POLICIES, InProcessServer

Q: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Explain tides."}]


class Service:
    def __init__(self, tmp_path: Path, **settings: object) -> None:
        self.policy = tmp_path / "policy.yaml"
        shutil.copy(POLICIES / "scripted.yaml", self.policy)
        self.alpha = ScriptedBackend("alpha")
        self.beta = ScriptedBackend("beta")
        self.server = InProcessServer(
            self.policy, {"alpha": self.alpha, "beta": self.beta}, **settings
        )
        self.client = openai.OpenAI(
            base_url=f"{self.server.base_url}/v1", api_key="x", max_retries=0
        )

    def post(self, body: dict[str, object], **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.server.base_url}/v1/chat/completions", json=body, headers=headers, timeout=30
        )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, keepalive_s=0.05)
    yield svc
    svc.server.stop()


def test_two_hidden_rounds_answer_with_the_last_rewrite_and_summed_usage(service: Service) -> None:
    service.alpha.queue(
        Completion("draft", "stop", Usage(10, 20)),
        Completion("too short", "stop", Usage(35, 5)),
        Completion("better", "stop", Usage(45, 25)),
        Completion("still vague", "stop", Usage(35, 6)),
        Completion("best answer", "stop", Usage(47, 30)),
    )
    raw = service.client.chat.completions.with_raw_response.create(model="gpt-4o", messages=Q)
    completion = raw.parse()
    assert completion.choices[0].message.content == "best answer"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (172, 86)
    h = raw.headers
    assert h["x-perfics-model"] == "alpha"
    assert h["x-perfics-rounds-planned"] == "2"
    assert h["x-perfics-rounds"] == "2"
    assert h["x-perfics-stop-reason"] == "max_rounds"
    assert (h["x-perfics-prompt-tokens"], h["x-perfics-completion-tokens"]) == ("172", "86")
    # alpha: 1.0 USD/Mtok in, 2.0 out; reference gpt-4o: 2.5 in, 10.0 out.
    assert Decimal(h["x-perfics-cost-usd"]) == Decimal("0.000344")  # (172*1 + 86*2) / 1e6
    assert Decimal(h["x-perfics-reference-cost-usd"]) == Decimal(
        "0.00129"
    )  # (172*2.5 + 86*10) / 1e6
    assert "e" not in h["x-perfics-cost-usd"].lower()
    assert int(h["x-perfics-latency-ms"]) >= 0
    perfics = completion.model_extra["perfics"]  # type: ignore[index]
    assert perfics["rounds"] == 2
    assert perfics["rounds_planned"] == 2
    assert perfics["stop_reason"] == "max_rounds"
    assert perfics["model"] == "alpha"
    assert perfics["task"] == "general"
    assert perfics["task_source"] == "alias"
    assert Decimal(str(perfics["cost_usd"])) == Decimal(h["x-perfics-cost-usd"])
    assert Decimal(str(perfics["reference_cost_usd"])) == Decimal(h["x-perfics-reference-cost-usd"])
    assert Decimal(str(perfics["estimated_cost_usd"])) == Decimal(h["x-perfics-estimated-cost-usd"])
    assert "trace" not in perfics


def test_trace_on_request_lists_each_round(service: Service) -> None:
    service.alpha.queue("draft", "needs detail", "detailed", "NO ISSUES")
    raw = service.post({"model": "auto", "messages": Q, "perfics": {"trace": True}})
    body = raw.json()
    trace = body["perfics"]["trace"]
    assert [(t["round"], t["critique"], t["rewrite"]) for t in trace] == [
        (1, "needs detail", "detailed"),
        (2, "NO ISSUES", None),
    ]
    assert body["perfics"]["stop_reason"] == "no_issues"
    assert body["perfics"]["rounds"] == 1
    assert raw.headers["x-perfics-stop-reason"] == "no_issues"
    assert all(
        set(t["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"} for t in trace
    )
    service.alpha.queue("draft", "NO ISSUES")
    assert (
        "trace"
        in service.post({"model": "auto", "messages": Q}, **{"X-Perfics-Trace": "1"}).json()[
            "perfics"
        ]
    )


def test_stream_sends_round_comments_then_streams_the_last_rewrite(service: Service) -> None:
    service.alpha.delay_s = 0.12  # longer than keepalive_s, so comments must flow meanwhile
    service.alpha.queue("draft", "issue one", "middle", "issue two", "final streamed answer")
    with httpx.stream(
        "POST",
        f"{service.server.base_url}/v1/chat/completions",
        timeout=30,
        json={
            "model": "auto",
            "messages": Q,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.headers["x-perfics-model"] == "alpha"
        assert response.headers["x-perfics-rounds-planned"] == "2"
        assert "x-perfics-cost-usd" not in response.headers
        lines = [line for line in response.iter_lines() if line]
    assert ": perfics round 1/2" in lines
    assert ": perfics round 2/2" in lines
    assert lines.index(": perfics round 1/2") < lines.index(": perfics round 2/2")
    assert any(line.startswith(": perfics") and "round" not in line for line in lines)  # keep-alive
    assert lines[-1] == "data: [DONE]"


def test_stream_through_sdk_text_usage_and_perfics_chunk(service: Service) -> None:
    replies = [
        Completion("draft", "stop", Usage(10, 2)),
        Completion("issue", "stop", Usage(20, 3)),
        Completion("mid", "stop", Usage(30, 4)),
        Completion("issue", "stop", Usage(40, 5)),
        Completion("the final streamed answer", "stop", Usage(50, 6)),
    ]
    service.alpha.queue(*replies)
    stream = service.client.chat.completions.create(
        model="auto",
        messages=Q,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "the final streamed answer"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1
    assert finishing[0].choices[0].finish_reason == "stop"
    extra = finishing[0].model_extra
    assert extra is not None
    perfics = extra["perfics"]
    assert perfics["rounds"] == 2
    assert perfics["stop_reason"] == "max_rounds"
    assert chunks[-1].usage is not None
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (150, 20)
    assert Decimal(str(perfics["cost_usd"])) == Decimal(format_usd((150 * 1.0 + 20 * 2.0) / 1e6))
    # The draft streamed from the backend; the rounds ran hidden, and the last rewrite, once
    # the acceptance rule kept it, was replayed.
    assert [c.streamed for c in service.alpha.calls] == [True, False, False, False, False]


def test_answer_accepted_on_no_issues_is_replayed_as_chunks(service: Service) -> None:
    draft = "A fairly long first draft that the critique accepts as it is, word for word."
    service.alpha.queue(draft, "No issues.")
    stream = service.client.chat.completions.create(model="auto", messages=Q, stream=True)
    chunks = [c for c in stream if c.choices]
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(pieces) == draft
    assert len(pieces) > 3


def test_fallback_to_the_next_model_when_the_first_is_down(service: Service) -> None:
    service.alpha.queue(BackendUnavailable("alpha is down"))
    service.beta.queue("draft", "NO ISSUES")
    raw = service.client.chat.completions.with_raw_response.create(model="auto", messages=Q)
    assert raw.parse().choices[0].message.content == "draft"
    assert raw.headers["x-perfics-model"] == "beta"
    assert raw.headers["x-perfics-fallbacks"] == "1"
    assert raw.parse().model_extra["perfics"]["fallbacks"] == ["alpha"]  # type: ignore[index]


def test_streaming_fallback_happens_before_headers(service: Service) -> None:
    service.alpha.queue(BackendError("alpha 500"))
    service.beta.queue("draft", "NO ISSUES")
    with service.client.chat.completions.with_streaming_response.create(
        model="auto",
        messages=Q,
        stream=True,
    ) as response:
        assert response.headers["x-perfics-model"] == "beta"
        assert response.headers["x-perfics-fallbacks"] == "1"
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == "draft"


def test_what_a_failed_model_spent_is_in_usage_and_cost(service: Service) -> None:
    # alpha drafts (100 in, 50 out at 1 and 2 USD/Mtok: 200e-6), then dies in its critique;
    # beta answers (40 in, 10 out at 0.1 and 0.2: 6e-6). The client pays, and sees, both.
    service.alpha.queue(Completion("alpha draft", "stop", Usage(100, 50)), BackendError("died"))
    service.beta.queue(Completion("beta draft", "stop", Usage(40, 10)), "NO ISSUES")
    raw = service.client.chat.completions.with_raw_response.create(model="auto", messages=Q)
    body = raw.parse()
    assert body.choices[0].message.content == "beta draft"
    assert raw.headers["x-perfics-model"] == "beta"
    assert raw.headers["x-perfics-fallbacks"] == "1"
    beta_usage = Usage(40, 10) + service_usage(service.beta.calls[1], "NO ISSUES")
    assert body.usage is not None
    assert (body.usage.prompt_tokens, body.usage.completion_tokens) == (
        100 + beta_usage.prompt_tokens,
        50 + beta_usage.completion_tokens,
    )
    expected = (100 * 1.0 + 50 * 2.0 + beta_usage.prompt_tokens * 0.1) / 1e6 + (
        beta_usage.completion_tokens * 0.2 / 1e6
    )
    assert Decimal(raw.headers["x-perfics-cost-usd"]) == Decimal(format_usd(expected))


def service_usage(call: object, reply: str) -> Usage:
    """What ``ScriptedBackend`` reports for a plain-string reply to ``call``."""
    import math

    messages = call.messages  # type: ignore[attr-defined]
    prompt = sum(math.ceil(len(str(m.get("content") or "")) / 4) + 4 for m in messages)
    return Usage(prompt, math.ceil(len(reply) / 4))


def test_client_errors_are_not_retried_elsewhere(service: Service) -> None:
    service.alpha.queue(UpstreamRejected("prompt too long", status_code=400))
    with pytest.raises(openai.BadRequestError):
        service.client.chat.completions.create(model="auto", messages=Q)
    assert service.beta.calls == []


def test_every_model_failing_is_a_503(service: Service) -> None:
    service.alpha.queue(BackendUnavailable("down"))
    service.beta.queue(BackendUnavailable("down too"))
    response = service.post({"model": "auto", "messages": Q})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "service_unavailable_error"


def test_error_after_the_stream_began_ends_with_error_event_and_done(service: Service) -> None:
    service.alpha.queue("draft", BackendError("upstream broke mid-refinement"))
    with httpx.stream(
        "POST",
        f"{service.server.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": Q, "stream": True},
        timeout=30,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert "event: error" in lines
    error_data = lines[lines.index("event: error") + 1]
    assert error_data.startswith('data: {"error"')
    assert lines[-1] == "data: [DONE]"


def test_budget_alias_picks_the_cheaper_plan(service: Service) -> None:
    service.beta.queue("draft", "NO ISSUES")
    raw = service.post({"model": "cheap", "messages": Q})
    assert raw.status_code == 200, raw.text
    assert raw.headers["x-perfics-model"] == "beta"
    assert Decimal(raw.headers["x-perfics-budget-usd"]) == Decimal("0.0002")
    assert service.alpha.calls == []


def test_budget_too_small_is_400_budget_exceeded(service: Service) -> None:
    response = service.post(
        {"model": "auto", "messages": Q}, **{"X-Perfics-Budget-Usd": "0.0000000001"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "USD" in error["message"]


@pytest.mark.parametrize(
    ("headers", "body", "param"),
    [
        ({"X-Perfics-Task": "astrology"}, None, "task"),
        ({}, {"task": "astrology"}, "task"),
        ({"X-Perfics-Budget-Usd": "-1"}, None, "budget_usd"),
        ({"X-Perfics-Budget-Usd": "lots"}, None, "budget_usd"),
        ({"X-Perfics-Max-Rounds": "-2"}, None, "max_rounds"),
        ({}, {"max_rounds": "two"}, "max_rounds"),
    ],
)
def test_bad_declarations_are_400_naming_the_field(
    service: Service, headers: dict[str, str], body: dict[str, object] | None, param: str
) -> None:
    payload: dict[str, object] = {"model": "auto", "messages": Q}
    if body is not None:
        payload["perfics"] = body
    response = service.post(payload, **headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_declared_round_cap_and_classified_task(service: Service) -> None:
    service.alpha.queue("draft", "fix", "fixed")
    raw = service.post({"model": "auto", "messages": Q}, **{"X-Perfics-Max-Rounds": "1"})
    assert raw.headers["x-perfics-rounds-planned"] == "1"
    assert raw.headers["x-perfics-rounds"] == "1"
    service.alpha.queue("quick answer")
    raw = service.post(
        {"model": "auto", "messages": [{"role": "user", "content": "A quick one: 2+2?"}]}
    )
    assert raw.headers["x-perfics-task"] == "quick"
    assert raw.headers["x-perfics-task-source"] == "classifier"
    assert raw.headers["x-perfics-stop-reason"] == "max_rounds"
    assert raw.headers["x-perfics-rounds"] == "0"


def test_pinned_catalog_model_still_refines(service: Service) -> None:
    service.beta.queue("draft", "fix", "fixed", "NO ISSUES")
    raw = service.post({"model": "beta", "messages": Q})
    assert raw.headers["x-perfics-model"] == "beta"
    assert raw.json()["choices"][0]["message"]["content"] == "fixed"


def test_n_two_refines_each_choice_on_its_own(service: Service) -> None:
    service.alpha.queue("d0", "NO ISSUES", "d1", "fix", "r1", "NO ISSUES")
    body = service.post({"model": "auto", "messages": Q, "n": 2, "seed": 5}).json()
    assert [c["message"]["content"] for c in body["choices"]] == ["d0", "r1"]
    assert [c.params.seed for c in service.alpha.calls if c.messages[-1] == Q[0]] == [5, 6]


def test_hot_reload_keeps_the_old_policy_on_a_bad_file(service: Service) -> None:
    url = f"{service.server.base_url}/admin/reload"
    good = service.policy.read_text()
    service.policy.write_text(
        good.replace("max_rounds: 2, answer_tokens: 100", "max_rounds: 1, answer_tokens: 100")
    )
    assert httpx.post(url).status_code == 200
    service.alpha.queue("draft", "fix", "fixed")
    assert service.post({"model": "auto", "messages": Q}).headers["x-perfics-rounds-planned"] == "1"

    service.policy.write_text(good.replace("version: 1", "version: 1\nbogus_key: 3"))
    bad = httpx.post(url)
    assert bad.status_code == 400
    assert "bogus_key" in bad.json()["error"]["message"]
    assert "policy.yaml:" in bad.json()["error"]["message"]
    ready = httpx.get(f"{service.server.base_url}/readyz").json()
    assert ready["last_reload_error"]
    assert "bogus_key" in ready["last_reload_error"]
    service.alpha.queue("draft", "fix", "fixed")
    assert service.post({"model": "auto", "messages": Q}).headers["x-perfics-rounds-planned"] == "1"


def test_request_in_flight_finishes_on_the_policy_it_started_with(service: Service) -> None:
    service.alpha.delay_s = 0.3
    service.alpha.queue("draft", "fix", "fixed", "fix", "twice fixed")
    result: dict[str, httpx.Response] = {}
    worker = threading.Thread(
        target=lambda: result.setdefault("r", service.post({"model": "auto", "messages": Q}))
    )
    worker.start()
    time.sleep(0.1)
    service.policy.write_text(
        service.policy.read_text().replace(
            "max_rounds: 2, answer_tokens: 100", "max_rounds: 0, answer_tokens: 100"
        )
    )
    assert httpx.post(f"{service.server.base_url}/admin/reload").status_code == 200
    worker.join()
    assert result["r"].headers["x-perfics-rounds"] == "2"
    assert result["r"].json()["choices"][0]["message"]["content"] == "twice fixed"


def test_stream_does_not_fall_back_once_its_headers_named_a_model(service: Service) -> None:
    service.alpha.queue("draft", BackendUnavailable("alpha died during a hidden round"))
    service.beta.queue("draft", "NO ISSUES")
    with httpx.stream(
        "POST",
        f"{service.server.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": Q, "stream": True},
        timeout=30,
    ) as response:
        assert response.headers["x-perfics-model"] == "alpha"
        lines = [line for line in response.iter_lines() if line]
    assert "event: error" in lines
    assert lines[-1] == "data: [DONE]"
    assert service.beta.calls == []


def test_body_score_and_estimate_are_the_answering_models(service: Service) -> None:
    service.alpha.queue(BackendUnavailable("alpha is down"))
    service.beta.queue("draft", "NO ISSUES")
    raw = service.post({"model": "auto", "messages": Q})
    perfics = raw.json()["perfics"]
    assert raw.headers["x-perfics-model"] == "beta"
    assert f"{perfics['score']:.6f}" == raw.headers["x-perfics-score"]
    assert Decimal(str(perfics["estimated_cost_usd"])) == Decimal(
        raw.headers["x-perfics-estimated-cost-usd"]
    )
