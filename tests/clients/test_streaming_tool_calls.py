"""Streamed tool calls as OpenAI sends them (the call's id and name first with ``content:
null``, then its arguments in pieces), assembled by the clients that read them: the openai
SDK's ``client.chat.completions.stream()`` helper and LangChain's streaming tool-call chunks
(``AIMessageChunk.tool_call_chunks``), on a tools-capable scripted model."""

from __future__ import annotations

import json

import openai
from langchain_core.messages import AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.clients.conftest import ToolsService, tool_call

ARGUMENTS = {"city": "San Francisco", "unit": "celsius", "days": 3}


class GetForecast(BaseModel):
    """The weather forecast for a city."""

    city: str
    unit: str
    days: int


def test_the_sdk_stream_helper_assembles_the_call(tools_service: ToolsService) -> None:
    tools_service.model.queue(tool_call("call_sf", "GetForecast", ARGUMENTS))
    client = openai.OpenAI(base_url=f"{tools_service.base_url}/v1", api_key="sk-any", max_retries=0)
    with client.chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Forecast for San Francisco, 3 days, Celsius?"}],
        tools=[openai.pydantic_function_tool(GetForecast)],
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    chunks = [event.chunk for event in events if event.type == "chunk"]
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    assert first.content is None
    assert first.tool_calls is not None
    assert first.tool_calls[0].id == "call_sf"
    pieces = [e.arguments_delta for e in events if e.type == "tool_calls.function.arguments.delta"]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == ARGUMENTS
    (done,) = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert done.name == "GetForecast"
    assert done.parsed_arguments == GetForecast.model_validate(ARGUMENTS)
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.id == "call_sf"
    assert call.function.name == "GetForecast"
    assert call.function.parsed_arguments == GetForecast.model_validate(ARGUMENTS)


def test_langchain_streams_tool_call_chunks_that_add_up(tools_service: ToolsService) -> None:
    @tool
    def get_forecast(city: str, unit: str, days: int) -> str:
        """The weather forecast for a city."""
        return "sunny"

    tools_service.model.queue(tool_call("call_sf", "get_forecast", ARGUMENTS))
    model = ChatOpenAI(
        base_url=f"{tools_service.base_url}/v1",
        api_key="sk-any",  # type: ignore[arg-type]
        model="gpt-4o",
        max_retries=0,
        streaming=True,
    ).bind_tools([get_forecast])
    chunks = list(model.stream("Forecast for San Francisco, 3 days, Celsius?"))
    with_calls = [chunk for chunk in chunks if chunk.tool_call_chunks]  # type: ignore[attr-defined]
    assert len(with_calls) > 2  # the head, then the arguments in pieces
    head = with_calls[0].tool_call_chunks[0]  # type: ignore[attr-defined]
    assert (head["id"], head["name"], head["args"]) == ("call_sf", "get_forecast", "")
    assert all(c.tool_call_chunks[0]["name"] is None for c in with_calls[1:])  # type: ignore[attr-defined]
    whole = chunks[0]
    assert isinstance(whole, AIMessageChunk)
    for chunk in chunks[1:]:
        assert isinstance(chunk, AIMessageChunk)
        whole += chunk
    assert isinstance(whole, AIMessageChunk)
    assert whole.tool_calls == [
        {"name": "get_forecast", "args": ARGUMENTS, "id": "call_sf", "type": "tool_call"}
    ]
    assert whole.response_metadata["finish_reason"] == "tool_calls"
