"""pydantic-ai's OpenAI chat model pointed at perfics, with what it sends recorded.

Its default structured output is a tool call it requires: ``tool_choice: "required"`` with one
``final_result`` tool. On the default policy (no model with the ``tools`` capability) that is
the contract's 400 naming ``tools``, which pydantic-ai raises as a rejected request; on a
tools-capable model it parses. An agent with a function tool and text output sends
``tool_choice: "auto"``, which the default policy answers in text without the tools
(``x-perfics-tools: not-offered``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.clients.conftest import Recorder, ToolsService, tool_call
from tests.conftest import ServerProcess


class City(BaseModel):
    name: str
    country: str


def chat_model(base_url: str, recorder: Recorder) -> OpenAIChatModel:
    provider = OpenAIProvider(
        base_url=f"{base_url}/v1",
        api_key="sk-any",
        http_client=recorder.async_client(timeout=300),
    )
    return OpenAIChatModel("gpt-4o", provider=provider)


def tool_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


async def test_default_structured_output_parses_on_a_tools_capable_model(
    tools_service: ToolsService,
) -> None:
    recorder = Recorder()
    tools_service.model.queue(
        tool_call("call_out", "final_result", {"name": "Paris", "country": "France"})
    )
    agent = Agent(chat_model(tools_service.base_url, recorder), output_type=City)
    result = await agent.run("Which city is the capital of France?")
    assert result.output == City(name="Paris", country="France")
    (body,) = recorder.bodies("/chat/completions")
    assert body["tool_choice"] == "required"
    assert tool_names(body) == ["final_result"]


@pytest.mark.model
async def test_default_structured_output_requires_a_tool_so_the_default_policy_refuses_it(
    default_server: ServerProcess,
) -> None:
    recorder = Recorder()
    agent = Agent(chat_model(default_server.base_url, recorder), output_type=City)
    with pytest.raises(ModelHTTPError) as refused:
        await agent.run("Which city is the capital of France?")
    (body,) = recorder.bodies("/chat/completions")
    assert body["tool_choice"] == "required"
    assert tool_names(body) == ["final_result"]
    assert refused.value.status_code == 400
    assert refused.value.body == {
        "message": "no model of this policy can serve what the request uses: tools",
        "type": "invalid_request_error",
        "param": "tools",
        "code": "unsupported_capability",
    }


@pytest.mark.model
@pytest.mark.slow
async def test_an_agent_with_a_function_tool_is_answered_in_text_on_the_default_policy(
    default_server: ServerProcess,
) -> None:
    recorder = Recorder()
    agent = Agent(chat_model(default_server.base_url, recorder), output_type=str)
    asked: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return "sunny"

    result = await agent.run("What is the capital of France? Answer in one sentence.")
    assert isinstance(result.output, str)
    assert result.output.strip()
    assert asked == []  # the bundled models were not shown the tool
    (body,) = recorder.bodies("/chat/completions")
    assert body["tool_choice"] == "auto"
    assert tool_names(body) == ["get_weather"]
    ((status, headers),) = recorder.responses
    assert status == 200
    assert headers["x-perfics-tools"] == "not-offered"
