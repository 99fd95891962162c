"""LangChain's own standard integration tests (``langchain-tests``' ``ChatModelIntegrationTests``)
through ``ChatOpenAI`` against a real ``perfics serve`` on the bundled SmolLM2, with the
capabilities its policy truly has: JSON schemas and logprobs on the default-like policy, and
tool calling (forced calls held to a grammar) where the policy lists ``tools``."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from tests.conftest import POLICIES, ServerProcess

pytestmark = [pytest.mark.model, pytest.mark.slow]
SERVERS: dict[str, ServerProcess] = {}

# langchain-openai shares one async HTTP client process-wide, so the standard suite's async
# tests run on one event loop, or the client outlives the loop it was opened on.
for _name, _test in vars(ChatModelIntegrationTests).items():
    if _name.startswith("test_") and inspect.iscoroutinefunction(_test):
        pytest.mark.asyncio(loop_scope="session")(_test)


@pytest.fixture(scope="module", autouse=True)
def servers() -> Iterator[None]:
    SERVERS["plain"] = ServerProcess(POLICIES / "smollm2.yaml")
    SERVERS["tools"] = ServerProcess(POLICIES / "smollm2-tools.yaml")
    yield
    for server in SERVERS.values():
        server.stop()


class PerficsChat(ChatModelIntegrationTests):
    server = "plain"

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "gpt-4o",
            "base_url": f"{SERVERS[self.server].base_url}/v1",
            "api_key": "unused",
            "temperature": 0,
            "max_retries": 0,
            "stream_usage": True,
        }

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supported_usage_metadata_details(
        self,
    ) -> dict[
        Literal["invoke", "stream"],
        list[
            Literal[
                "audio_input",
                "audio_output",
                "reasoning_output",
                "cache_read_input",
                "cache_creation_input",
            ]
        ],
    ]:
        return {"invoke": [], "stream": []}

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "smollm2-135m"  # a catalog id: pins the model

    @property
    def supports_json_mode(self) -> bool:
        # JSON mode holds the answer to JSON, not to the keys the prompt asks for; a 135M
        # model does not follow such instructions (json_schema, below, is held to the keys).
        return False

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}


class TestPerficsDefaultCapabilities(PerficsChat):
    """JSON schemas and logprobs, no tools (the bundled models are not tool callers)."""

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return True

    @pytest.mark.xfail(
        reason="langchain-openai sends a pydantic v1 schema as a tool call, and this policy's "
        "model lists no tools: the proxy refuses with 400 (param tools), as it should",
        strict=True,
    )
    def test_structured_output_pydantic_2_v1(self, model: BaseChatModel) -> None:
        super().test_structured_output_pydantic_2_v1(model)


class TestPerficsToolCalling(PerficsChat):
    """The same model with ``tools`` in its capabilities: a forced call is held to a grammar
    built from the function's parameters."""

    server = "tools"

    @property
    def has_tool_calling(self) -> bool:
        return True

    @pytest.mark.xfail(
        reason="tool_choice auto: SmolLM2-135M answers the weather question in text instead "
        "of calling the tool; forced calls (the other tool tests) are held to a grammar",
        strict=True,
    )
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)

    @pytest.mark.xfail(
        reason="the call is forced and valid, but SmolLM2-135M copies '<string>' from the "
        "schema instead of the Chinese company name: a model limit, not the proxy's",
        strict=True,
    )
    def test_unicode_tool_call_integration(self, model: BaseChatModel, **kwargs: Any) -> None:
        super().test_unicode_tool_call_integration(model, **kwargs)

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True
