"""Capability-aware routing and the wire's refusals, through the official SDK against a real
server with scripted models: a request that uses tools, a JSON schema, logprobs or images goes
only to a model that can serve it, or is refused naming the field. Nothing is silently
dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletionContentPartParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)

from proxy.backends.base import Completion
from proxy.backends.scripted import ScriptedBackend
from proxy.cli import main
from proxy.results import Usage
from tests.conftest import POLICIES, InProcessServer

POLICY = POLICIES / "capabilities.yaml"
Q: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What's the weather in Paris?"}]
TOOLS: list[ChatCompletionFunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


class Service:
    def __init__(self) -> None:
        self.plain = ScriptedBackend("plain", default="plain answer")
        self.tooled = ScriptedBackend("tooled", default="tooled answer")
        self.server = InProcessServer(POLICY, {"plain": self.plain, "tooled": self.tooled})
        self.client = openai.OpenAI(
            base_url=f"{self.server.base_url}/v1", api_key="x", max_retries=0
        )

    def model_for(self, **body: Any) -> str:
        raw = self.client.chat.completions.with_raw_response.create(
            model=body.pop("model", "auto"), messages=body.pop("messages", Q), **body
        )
        return str(raw.headers["x-perfics-model"])


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    svc = Service()
    yield svc
    svc.server.stop()


def test_plain_requests_go_to_the_best_model(service: Service) -> None:
    assert service.model_for() == "plain"


def test_tools_go_to_a_model_that_can_call_them(service: Service) -> None:
    service.tooled.queue(Completion("", "tool_calls", Usage(5, 5), (CALL,)))
    raw = service.client.chat.completions.with_raw_response.create(
        model="auto",
        messages=Q,
        tools=TOOLS,
    )
    assert raw.headers["x-perfics-model"] == "tooled"
    message = raw.parse().choices[0].message
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "get_weather"
    assert service.tooled.calls[-1].params.tools == TOOLS


def test_json_schema_and_logprobs_route_to_capable_models(service: Service) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    assert service.model_for(response_format=schema) == "tooled"
    assert service.model_for(logprobs=True, top_logprobs=2) == "tooled"
    assert service.tooled.calls[-1].params.top_logprobs == 2


def test_a_pinned_model_without_the_capability_is_400_naming_the_field(service: Service) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        service.client.chat.completions.create(
            model="plain",
            messages=Q,
            tools=TOOLS,
            tool_choice="required",
        )
    assert caught.value.code == "unsupported_capability"
    assert caught.value.param == "tools"
    assert "plain" in caught.value.message


def test_tools_a_pinned_model_may_decline_are_answered_in_text(service: Service) -> None:
    for choice in ("auto", "none", openai.omit):
        raw = service.client.chat.completions.with_raw_response.create(
            model="plain", messages=Q, tools=TOOLS, tool_choice=choice
        )
        assert raw.headers["x-perfics-tools"] == "not-offered"
        assert raw.parse().choices[0].message.content == "plain answer"
        # The model was not shown the tools.
        assert service.plain.calls[-1].params.tools is None
        assert service.plain.calls[-1].params.tool_choice is None


def test_images_no_model_can_see_are_refused(service: Service) -> None:
    parts: list[ChatCompletionContentPartParam] = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        service.client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": parts}],
        )
    assert caught.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as audio:
        service.client.chat.completions.create(
            model="auto",
            # Malformed on purpose (input_audio without data or format): the SDK's types
            # refuse it, the proxy must refuse it by its path.
            messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],  # type: ignore[list-item, misc]
        )
    assert audio.value.param == "messages[0].content"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logit_bias", {"50256": -100}),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("functions", [{"name": "f", "parameters": {}}]),
        ("reasoning_effort", "high"),
        ("prediction", {"type": "content", "content": "x"}),
    ],
)
def test_fields_the_proxy_cannot_serve_are_refused_by_name(
    service: Service, field: str, value: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        service.client.chat.completions.create(
            model="auto",
            messages=Q,
            extra_body={field: value},
        )
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == field


def test_labels_and_defaults_are_accepted(service: Service) -> None:
    assert (
        service.model_for(
            store=False, metadata={"team": "a"}, user="u1", extra_body={"modalities": ["text"]}
        )
        == "plain"
    )


def test_route_explains_what_a_model_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "--policy", str(POLICY), "--uses", "tools", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["model"] == "tooled"
    reasons = {c["model"]: c["reason"] for c in plan["candidates"]}
    assert reasons["plain"] == "lacks tools"
    assert main(["route", "--policy", str(POLICY), "--model", "plain", "--uses", "vision"]) == 3
    assert "cannot serve what the request uses: vision" in capsys.readouterr().err
