"""LangChain's ``bind_tools`` on the default policy, with what it sends recorded: without a
``tool_choice`` the bundled models (no ``tools`` capability) answer in text; with
``tool_choice="any"`` (LangChain sends ``required``) it is the contract's 400 naming ``tools``,
which LangChain raises as its invalid-request error."""

from __future__ import annotations

import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.clients.conftest import Recorder
from tests.conftest import ServerProcess

pytestmark = pytest.mark.model


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def chat(server: ServerProcess, recorder: Recorder) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{server.base_url}/v1",
        api_key="sk-any",  # type: ignore[arg-type]
        model="gpt-4o",
        max_retries=0,
        max_tokens=40,  # type: ignore[call-arg]
        http_client=recorder.client(timeout=300),
    )


@pytest.mark.slow
def test_bound_tools_are_answered_in_text(default_server: ServerProcess) -> None:
    recorder = Recorder()
    reply = chat(default_server, recorder).bind_tools([get_weather]).invoke("Capital of France?")
    assert isinstance(reply, AIMessage)
    assert reply.content
    assert not reply.tool_calls
    (body,) = recorder.bodies("/chat/completions")
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert "tool_choice" not in body
    ((status, headers),) = recorder.responses
    assert status == 200
    assert headers["x-perfics-tools"] == "not-offered"


def test_a_required_tool_is_refused_naming_tools(default_server: ServerProcess) -> None:
    recorder = Recorder()
    model = chat(default_server, recorder).bind_tools([get_weather], tool_choice="any")
    with pytest.raises(openai.BadRequestError) as refused:
        model.invoke("Weather in Paris?")
    (body,) = recorder.bodies("/chat/completions")
    assert body["tool_choice"] == "required"
    assert (refused.value.code, refused.value.param) == ("unsupported_capability", "tools")
