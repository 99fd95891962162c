"""A prompt longer than every context of the default policy, through the client libraries that
turn OpenAI's ``context_length_exceeded`` into an exception of their own (so an application
can trim its history and retry): LangChain's ``ContextOverflowError``, pydantic-ai's
``ModelContextWindowExceededError`` and litellm's ``ContextWindowExceededError``. The planner
refuses it before any model runs, so this costs no generation."""

from __future__ import annotations

import openai
import pytest
from langchain_core.exceptions import ContextOverflowError
from langchain_openai import ChatOpenAI
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelContextWindowExceededError, ModelHTTPError
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.conftest import ServerProcess

pytestmark = pytest.mark.model

LONG = (
    "word " * 40_000
)  # about 50,000 tokens by the planner's estimate; the largest window is 8,192


def langchain(server: ServerProcess) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{server.base_url}/v1",
        api_key="sk-any",  # type: ignore[arg-type]
        model="gpt-4o",
        max_retries=0,
    )


def test_the_wire_error_is_openais_context_length_exceeded(default_server: ServerProcess) -> None:
    client = openai.OpenAI(
        base_url=f"{default_server.base_url}/v1", api_key="sk-any", max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": LONG}])
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert "maximum context length is 8192 tokens" in caught.value.message


def test_langchain_raises_its_context_overflow_error(default_server: ServerProcess) -> None:
    with pytest.raises(ContextOverflowError):
        langchain(default_server).invoke(LONG)


async def test_pydantic_ai_raises_its_context_window_error(default_server: ServerProcess) -> None:
    provider = OpenAIProvider(base_url=f"{default_server.base_url}/v1", api_key="sk-any")
    agent = Agent(OpenAIChatModel("gpt-4o", provider=provider))
    with pytest.raises(ModelContextWindowExceededError) as caught:
        await agent.run(LONG)
    assert isinstance(caught.value, ModelHTTPError)  # an HTTP 400 overflow is both
    assert caught.value.status_code == 400


def test_litellm_raises_its_context_window_error(
    default_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # litellm fetches its cost map from the network at import unless told not to.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from litellm.exceptions import ContextWindowExceededError

    with pytest.raises(ContextWindowExceededError):
        litellm.completion(
            model="openai/gpt-4o",
            api_base=f"{default_server.base_url}/v1",
            api_key="sk-any",
            messages=[{"role": "user", "content": LONG}],
            num_retries=0,
        )
