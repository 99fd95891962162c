"""Tools, logprobs and request ids on the real bundled model, through the official SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
)

from tests.conftest import POLICIES, ServerProcess

pytestmark = pytest.mark.model
MAGIC: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "magic_function",
        "description": "Apply a magic function to an input.",
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "integer"}},
            "required": ["input"],
        },
    },
}
WEATHER: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather at a location.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the value of magic_function(3)? Use the tool."}
]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    served = ServerProcess(POLICIES / "smollm2-tools.yaml")
    yield served
    served.stop()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "magic_function"}}]
)
def test_a_forced_tool_call_is_a_real_call_with_valid_arguments(
    client: openai.OpenAI, tool_choice: ChatCompletionToolChoiceOptionParam
) -> None:
    completion = client.chat.completions.create(
        model="auto",
        messages=ASK,
        tools=[MAGIC, WEATHER],
        tool_choice=tool_choice,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id
    assert call.type == "function"
    arguments = json.loads(call.function.arguments)
    if call.function.name == "magic_function":
        assert isinstance(arguments["input"], int)
    else:
        assert call.function.name == "get_weather"
        assert isinstance(arguments["location"], str)


def test_a_tool_call_streams_and_a_tool_result_round_trips(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto",
        messages=ASK,
        tools=[MAGIC],
        tool_choice="required",
        temperature=0,
        stream=True,
    )
    deltas = [c.choices[0].delta for c in stream if c.choices and c.choices[0].delta.tool_calls]
    # As OpenAI streams a call: its id and name first (content null), then the arguments in
    # pieces, each naming the call by index.
    head = deltas[0].tool_calls
    assert head is not None
    assert deltas[0].content is None
    call = head[0]
    assert call.id
    assert call.function is not None
    assert call.function.name == "magic_function"
    pieces = [d.tool_calls[0] for d in deltas[1:] if d.tool_calls]
    assert pieces
    assert all(p.index == 0 and p.id is None for p in pieces)
    arguments = "".join((p.function.arguments or "") for p in pieces if p.function is not None)
    json.loads(arguments)
    history: list[ChatCompletionMessageParam] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "magic_function", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "5"},
    ]
    answer = client.chat.completions.create(
        model="auto",
        messages=history,
        tools=[MAGIC],
        tool_choice="none",
        temperature=0,
        max_tokens=24,
    )
    assert answer.choices[0].message.content
    assert answer.choices[0].message.tool_calls is None


def test_logprobs_have_the_sdks_shape_streamed_and_not(client: openai.OpenAI) -> None:
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Name three colours."}
    ]
    whole = client.chat.completions.create(
        model="auto",
        messages=question,
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None
    content = logprobs.content
    assert content is not None
    assert whole.usage is not None
    assert len(content) == whole.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert entry.bytes is not None
    assert "".join(e.token for e in content) == whole.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="auto",
            messages=question,
            max_tokens=8,
            temperature=0,
            logprobs=True,
            top_logprobs=3,
            stream=True,
        )
    )
    streamed = [
        entry
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content
        for entry in chunk.choices[0].logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in content]


def test_a_clients_request_id_is_kept_and_an_unsafe_one_replaced(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, max_tokens=2, extra_headers={"X-Request-Id": "trace-abc.123"}
    )
    assert raw.headers["x-request-id"] == "trace-abc.123"
    unsafe = client.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, max_tokens=2, extra_headers={"X-Request-Id": "x" * 200}
    )
    assert unsafe.headers["x-request-id"].startswith("req_")
