"""The Responses API through the official OpenAI SDK (``client.responses``), over the same
pipeline as chat completions, with scripted models behind a real uvicorn server: create,
stream (events and the SDK's ``.stream()`` helper), retrieve, input items, delete,
``previous_response_id``, function tools and their outputs, ``text.format`` and the errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from proxy.backends.base import Completion
from proxy.backends.scripted import ScriptedBackend
from proxy.results import Usage
from tests.conftest import POLICIES, InProcessServer

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = {
    "id": "call_7",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


class Service:
    def __init__(self, tmp_path: Path, server: str = "") -> None:
        policy = tmp_path / "policy.yaml"
        text = (POLICIES / "scripted.yaml").read_text()
        # Rounds off, tools on: the Responses API's own behaviour is under test here.
        text = text.replace("general: {max_rounds: 2", "general: {max_rounds: 0")
        text = text.replace(
            "quality: {default: [6.0, 7.0, 7.5]}",
            "quality: {default: [6.0]}\n    capabilities: [tools, json_schema]",
        )
        policy.write_text(text + server)
        self.alpha = ScriptedBackend("alpha")
        self.beta = ScriptedBackend("beta")
        self.server = InProcessServer(
            policy,
            {"alpha": self.alpha, "beta": self.beta},
            database_url=f"sqlite:///{tmp_path / 'store.db'}",
            keepalive_s=0.05,
        )
        self.base_url = self.server.base_url
        self.client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="x", max_retries=0)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    yield svc
    svc.server.stop()


def test_create_answers_in_the_responses_shape_with_usage_and_headers(service: Service) -> None:
    service.alpha.queue(Completion("Paris.", "stop", Usage(12, 3)))
    raw = service.client.responses.with_raw_response.create(
        model="gpt-4o",
        instructions="Answer in one word.",
        input="What is the capital of France?",
        max_output_tokens=20,
        temperature=0.3,
    )
    response = raw.parse()
    assert response.object == "response"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text == "Paris."
    assert response.output[0].type == "message"
    assert response.output[0].role == "assistant"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.usage.total_tokens == 15
    assert response.model == "alpha"
    assert response.instructions == "Answer in one word."
    assert raw.headers["x-perfics-model"] == "alpha"
    assert raw.headers["x-perfics-prompt-tokens"] == "12"
    assert response.model_extra is not None
    assert response.model_extra["perfics"]["model"] == "alpha"
    # The pipeline was sent the chat equivalent: instructions first, then the input.
    call = service.alpha.calls[-1]
    assert [m["role"] for m in call.messages] == ["system", "user"]
    assert call.messages[0]["content"] == "Answer in one word."
    assert call.params.max_tokens == 20
    assert call.params.temperature == 0.3


def test_stream_sends_the_event_sequence_the_sdk_assembles(service: Service) -> None:
    service.alpha.queue(Completion("The capital is Paris.", "stop", Usage(9, 5)))
    with service.client.responses.stream(model="auto", input="Capital of France?") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert "response.output_text.delta" in kinds
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "The capital is Paris."
    assert final.usage is not None
    assert final.usage.output_tokens == 5
    # Stored before it was completed: another request finds it at once.
    assert service.client.responses.retrieve(final.id).output_text == "The capital is Paris."


def test_raw_stream_events_carry_sequence_numbers(service: Service) -> None:
    service.alpha.queue("Short answer here")
    events = list(service.client.responses.create(model="auto", input="hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Short answer here"


def test_previous_response_id_continues_the_conversation_from_the_store(service: Service) -> None:
    service.alpha.queue("Paris.", "About 2.1 million.")
    first = service.client.responses.create(
        model="auto", instructions="Be brief.", input="Capital of France?"
    )
    second = service.client.responses.create(
        model="auto", previous_response_id=first.id, input="And its population?"
    )
    assert second.previous_response_id == first.id
    call = service.alpha.calls[-1]
    # The earlier turn comes from the store; its instructions are not carried over.
    assert [(m["role"], m["content"]) for m in call.messages] == [
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "And its population?"),
    ]
    items = service.client.responses.input_items.list(second.id, order="asc")
    assert [item.type for item in items.data] == ["message", "message", "message"]


def test_function_tools_and_their_outputs_round_trip(service: Service) -> None:
    service.alpha.queue(Completion("", "tool_calls", Usage(30, 8), tool_calls=(CALL,)))
    first = service.client.responses.create(
        model="auto",
        input="Weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
    )
    call = first.output[0]
    assert call.type == "function_call"
    assert (call.name, call.call_id, json.loads(call.arguments)) == (
        "get_weather",
        "call_7",
        {"city": "Paris"},
    )
    sent = service.alpha.calls[-1].params
    assert sent.tools == [
        {
            "type": "function",
            "function": {k: WEATHER[k] for k in ("name", "description", "parameters")},
        }
    ]
    service.alpha.queue("It is sunny in Paris.")
    second = service.client.responses.create(
        model="auto",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_7", "output": "sunny, 21 C"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == "It is sunny in Paris."
    messages = service.alpha.calls[-1].messages
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"][0]["id"] == "call_7"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_7", "content": "sunny, 21 C"}


def test_a_streamed_function_call_arrives_as_argument_deltas(service: Service) -> None:
    service.alpha.queue(Completion("", "tool_calls", Usage(30, 8), tool_calls=(CALL,)))
    with service.client.responses.stream(
        model="auto",
        input="Weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert final.output[0].type == "function_call"
    assert json.loads(final.output[0].arguments) == {"city": "Paris"}


def test_text_format_json_schema_becomes_the_response_format(service: Service) -> None:
    service.alpha.queue('{"city": "Paris"}')
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    response = service.client.responses.create(
        model="auto",
        input="Capital of France as JSON",
        text={"format": {"type": "json_schema", "name": "capital", "schema": schema}},
    )
    assert json.loads(response.output_text) == {"city": "Paris"}
    sent = service.alpha.calls[-1].params.response_format
    assert sent == {"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}}


def test_delete_and_not_found(service: Service) -> None:
    service.alpha.queue("x")
    made = service.client.responses.create(model="auto", input="hi")
    service.client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError) as caught:
        service.client.responses.retrieve(made.id)
    assert caught.value.body["code"] == "response_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as missing:
        service.client.responses.create(model="auto", input="hi", previous_response_id="resp_nope")
    assert missing.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_store_false_keeps_nothing(service: Service) -> None:
    service.alpha.queue("x")
    made = service.client.responses.create(model="auto", input="hi", store=False)
    assert made.model_extra is not None  # the SDK's Response has no store field
    assert made.model_extra["store"] is False
    with pytest.raises(openai.NotFoundError):
        service.client.responses.retrieve(made.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "hi", "background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": ""}, "input"),
    ],
)
def test_what_is_not_served_is_a_400_naming_the_field(
    service: Service, body: dict[str, object], param: str
) -> None:
    response = httpx.post(
        f"{service.base_url}/v1/responses", json={"model": "auto", **body}, timeout=10
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert not service.alpha.calls


def test_other_methods_and_unknown_paths_answer_openais_way(service: Service) -> None:
    put = httpx.put(f"{service.base_url}/v1/responses", timeout=10)
    assert put.status_code == 405
    assert put.headers["allow"] == "POST"
    missing = httpx.post(f"{service.base_url}/v1/nothing-here", json={}, timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "Invalid URL (POST /v1/nothing-here)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


@pytest.mark.heavy
def test_a_policy_may_forbid_storing_conversations(tmp_path: Path) -> None:
    service = Service(tmp_path, server="server: {store_responses: false}\n")
    try:
        service.alpha.queue("x")
        made = service.client.responses.create(model="auto", input="hi")  # store defaults true
        assert made.model_extra is not None  # the SDK's Response has no store field
        assert made.model_extra["store"] is False
        with pytest.raises(openai.NotFoundError):
            service.client.responses.retrieve(made.id)
        with pytest.raises(openai.BadRequestError) as caught:
            service.client.responses.create(model="auto", input="hi", previous_response_id=made.id)
        assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    finally:
        service.server.stop()


def test_text_streamed_before_a_function_call_is_an_output_item_of_its_own(
    service: Service,
) -> None:
    service.alpha.queue(Completion("Let me check.", "tool_calls", Usage(30, 8), tool_calls=(CALL,)))
    with service.client.responses.stream(
        model="auto",
        input="Weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    assert added == [0, 1]
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == "Let me check."
