"""instructor over the openai SDK pointed at perfics, with what it sends recorded.

``Mode.TOOLS`` forces one function by name (``tool_choice: {"type": "function", ...}``): on
the default policy that is the contract's 400 naming ``tools``; on a tools-capable model it
parses. ``Mode.JSON_SCHEMA`` sends a ``response_format`` JSON schema, which the bundled models
serve (held to a grammar by llama.cpp).

instructor is not among the dev dependencies: every release pins ``jiter<0.15``, which
openai>=3.50 (required by pydantic-ai-slim 2.78) forbids, so pip cannot install both. To run
these tests, install it beside them without its pins:
``.venv/bin/pip install --no-deps instructor==1.17.0 docstring-parser typer``."""

from __future__ import annotations

import openai
import pytest
from pydantic import BaseModel

from tests.clients.conftest import Recorder, ToolsService, tool_call
from tests.conftest import ServerProcess

instructor = pytest.importorskip("instructor", reason="instructor is installed by hand (above)")
from instructor.core import InstructorRetryException  # noqa: E402

ASK = [{"role": "user", "content": "Which city is the capital of France, in which country?"}]


class City(BaseModel):
    name: str
    country: str


def patched(base_url: str, recorder: Recorder, mode: object) -> object:
    client = openai.OpenAI(
        base_url=f"{base_url}/v1",
        api_key="sk-any",
        max_retries=0,
        http_client=recorder.client(timeout=300),
    )
    return instructor.from_openai(client, mode=mode)


def test_tools_mode_parses_on_a_tools_capable_model(tools_service: ToolsService) -> None:
    recorder = Recorder()
    tools_service.model.queue(tool_call("call_c", "City", {"name": "Paris", "country": "France"}))
    client = patched(tools_service.base_url, recorder, instructor.Mode.TOOLS)
    city = client.chat.completions.create(  # type: ignore[attr-defined]
        model="gpt-4o", response_model=City, messages=ASK, max_retries=0
    )
    assert isinstance(city, City)
    assert city.model_dump() == {"name": "Paris", "country": "France"}
    (body,) = recorder.bodies("/chat/completions")
    assert body["tool_choice"] == {"type": "function", "function": {"name": "City"}}


@pytest.mark.model
def test_tools_mode_names_a_function_so_the_default_policy_refuses_it(
    default_server: ServerProcess,
) -> None:
    recorder = Recorder()
    client = patched(default_server.base_url, recorder, instructor.Mode.TOOLS)
    with pytest.raises(InstructorRetryException) as refused:
        client.chat.completions.create(  # type: ignore[attr-defined]
            model="gpt-4o", response_model=City, messages=ASK, max_retries=0
        )
    (body,) = recorder.bodies("/chat/completions")
    assert body["tool_choice"] == {"type": "function", "function": {"name": "City"}}
    cause = refused.value.__cause__
    assert isinstance(cause, openai.BadRequestError)
    assert (cause.code, cause.param) == ("unsupported_capability", "tools")


@pytest.mark.model
def test_json_schema_mode_is_served_on_the_default_policy(default_server: ServerProcess) -> None:
    """Served, not necessarily right: whether SmolLM2's JSON names the schema's fields is the
    model's business (instructor then raises on validation); the request must be a 200."""
    recorder = Recorder()
    client = patched(default_server.base_url, recorder, instructor.Mode.JSON_SCHEMA)
    invalid: InstructorRetryException | None = None
    try:
        client.chat.completions.create(  # type: ignore[attr-defined]
            model="gpt-4o", response_model=City, messages=ASK, max_retries=0, max_tokens=60
        )
    except InstructorRetryException as exc:  # the model's JSON did not validate: allowed
        invalid = exc
    assert invalid is None or not isinstance(invalid.__cause__, openai.APIStatusError), invalid
    (body,) = recorder.bodies("/chat/completions")
    assert body["response_format"]["type"] == "json_schema"
    assert [status for status, _ in recorder.responses] == [200]
