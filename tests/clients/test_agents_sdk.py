"""The OpenAI Agents SDK (``openai-agents``) with its default model, ``OpenAIResponsesModel``
over ``POST /v1/responses``, pointed at perfics the way its docs say: an ``AsyncOpenAI``
client with ``base_url`` made the default (``set_default_openai_client``) and tracing off
(``set_tracing_disabled``), so nothing leaves the machine.

On a tools-capable scripted model the agent's function tool runs with the arguments the model
gave and the run ends on the model's text, whole (``Runner.run``) and streamed
(``Runner.run_streamed``); on the default policy's real bundled model a plain agent answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import (
    Agent,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import _openai_shared as agents_openai
from agents.models import get_default_model
from openai import AsyncOpenAI

from tests.clients.conftest import Recorder, ToolsService, tool_call
from tests.conftest import ServerProcess


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Requests recorded on the client the SDK uses by default; the SDK's defaults restored
    afterwards (they are module state)."""
    before = agents_openai.get_default_openai_client()
    yield Recorder()
    if before is not None:
        set_default_openai_client(before, use_for_tracing=False)
    else:
        agents_openai._default_openai_client = None  # what the setter's type cannot say


def point_at(base_url: str, recorder: Recorder) -> None:
    client = AsyncOpenAI(
        base_url=f"{base_url}/v1",
        api_key="sk-anything",
        max_retries=0,
        http_client=recorder.async_client(timeout=300),
    )
    set_default_openai_client(client, use_for_tracing=False)
    set_tracing_disabled(True)


@pytest.fixture
def default_named(tmp_path: Path) -> Iterator[ToolsService]:
    """A tools-capable scripted model under a policy that accepts the SDK's default model name
    as an alias (with ``model`` left out, the SDK sends that name)."""
    service = ToolsService(tmp_path, extra_alias=get_default_model())
    yield service
    service.stop()


class Weather:
    """A function tool that records the cities it was asked about."""

    def __init__(self) -> None:
        self.cities: list[str] = []

        @function_tool
        def get_weather(city: str) -> str:
            """The weather in a city."""
            self.cities.append(city)
            return f"sunny, 21 C in {city}"

        self.tool = get_weather


async def test_the_default_model_calls_a_function_tool_and_answers(
    default_named: ToolsService, recorder: Recorder
) -> None:
    point_at(default_named.base_url, recorder)
    weather = Weather()
    default_named.model.queue(
        tool_call("call_paris", "get_weather", {"city": "Paris"}), "It is sunny in Paris."
    )
    agent = Agent(name="forecaster", instructions="Use your tools.", tools=[weather.tool])
    result = await Runner.run(agent, "What is the weather in Paris?")
    assert result.final_output == "It is sunny in Paris."
    assert weather.cities == ["Paris"]
    # The default model is the Responses one: both turns went to /v1/responses under the
    # SDK's default model name, the second carrying the call and the tool's output.
    paths = [path for _, path, _ in recorder.requests]
    assert paths == ["/v1/responses", "/v1/responses"]
    first, second = recorder.bodies("/v1/responses")
    assert first["model"] == get_default_model()
    assert [tool["name"] for tool in first["tools"]] == ["get_weather"]
    kinds = [item.get("type", "message") for item in second["input"]]
    assert kinds == ["message", "function_call", "function_call_output"]
    assert second["input"][2]["output"] == "sunny, 21 C in Paris"
    assert all(headers["x-perfics-tools"] == "offered" for _, headers in recorder.responses)
    # What the scripted model was shown on the second turn: the call and its output.
    messages = default_named.model.calls[-1].messages
    assert messages[0] == {"role": "system", "content": "Use your tools."}
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": "call_paris",
        "content": "sunny, 21 C in Paris",
    }


async def test_a_streamed_run_calls_the_tool_and_streams_the_answer(
    default_named: ToolsService, recorder: Recorder
) -> None:
    point_at(default_named.base_url, recorder)
    weather = Weather()
    default_named.model.queue(
        tool_call("call_rome", "get_weather", {"city": "Rome"}), "Rome is sunny today."
    )
    agent = Agent(name="forecaster", instructions="Use your tools.", tools=[weather.tool])
    streamed = Runner.run_streamed(agent, "What is the weather in Rome?")
    raw: list[str] = []
    items: list[str] = []
    async for event in streamed.stream_events():
        if event.type == "raw_response_event":
            raw.append(event.data.type)
        elif event.type == "run_item_stream_event":
            items.append(event.name)
    assert streamed.final_output == "Rome is sunny today."
    assert weather.cities == ["Rome"]
    assert items == ["tool_called", "tool_output", "message_output_created"]
    assert raw.count("response.completed") == 2
    assert "response.function_call_arguments.delta" in raw
    assert "response.output_text.delta" in raw
    assert all(body.get("stream") for body in recorder.bodies("/v1/responses"))


async def test_a_run_continues_from_its_previous_response_in_the_store(
    tools_service: ToolsService, recorder: Recorder
) -> None:
    point_at(tools_service.base_url, recorder)
    tools_service.model.queue("Paris.", "About two million people.")
    agent = Agent(name="brief", instructions="Be brief.", model="gpt-4o")
    first = await Runner.run(agent, "Capital of France?")
    second = await Runner.run(
        agent, "And its population?", previous_response_id=first.last_response_id
    )
    assert second.final_output == "About two million people."
    sent = recorder.bodies("/v1/responses")[-1]
    assert sent["previous_response_id"] == first.last_response_id
    assert [(m["role"], m["content"]) for m in tools_service.model.calls[-1].messages] == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "And its population?"),
    ]


@pytest.mark.model
@pytest.mark.slow
async def test_a_plain_agent_answers_on_the_default_policy(
    default_server: ServerProcess, recorder: Recorder
) -> None:
    """The bundled models take no tools and need none here: the agent's text answer comes
    from SmolLM2 through the same Responses endpoint. Agents name their model: the SDK's
    default name is no alias of the default policy (404 ``model_not_found``, as for any
    unknown model), so the agent says ``gpt-4o``, which the policy maps to its planner."""
    point_at(default_server.base_url, recorder)
    agent = Agent(name="plain", instructions="Answer in one sentence.", model="gpt-4o")
    result = await Runner.run(agent, "What is the capital of France?")
    assert isinstance(result.final_output, str)
    assert result.final_output.strip()
    ((status, headers),) = recorder.responses
    assert status == 200
    assert headers["x-perfics-model"] in ("smollm2-135m", "gemma3-270m")
    assert "x-perfics-tools" not in headers


@pytest.mark.model
@pytest.mark.slow
async def test_an_agent_with_a_tool_is_answered_in_text_on_the_default_policy(
    default_server: ServerProcess, recorder: Recorder
) -> None:
    """The SDK sends its tools without ``tool_choice``: a model that cannot call them answers
    in text, and the tool never runs."""
    point_at(default_server.base_url, recorder)
    weather = Weather()
    agent = Agent(
        name="forecaster",
        instructions="Answer in one sentence.",
        model="gpt-4o",
        tools=[weather.tool],
    )
    result = await Runner.run(agent, "What is the capital of France?")
    assert isinstance(result.final_output, str)
    assert result.final_output.strip()
    assert weather.cities == []
    (body,) = recorder.bodies("/v1/responses")
    assert [tool["name"] for tool in body["tools"]] == ["get_weather"]
    assert "tool_choice" not in body
    ((status, headers),) = recorder.responses
    assert status == 200
    assert headers["x-perfics-tools"] == "not-offered"
