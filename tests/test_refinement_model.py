"""Refinement on the real bundled SmolLM2 through the OpenAI SDK: hidden rounds run, usage
covers them, and the streamed final answer equals the non-streamed one at temperature 0."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import ServerProcess

pytestmark = pytest.mark.model
Q: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Explain in two sentences why the sky is blue."}
]


@pytest.fixture
def client(model_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{model_server.base_url}/v1", api_key="x", max_retries=0)


def test_planned_rounds_run_and_usage_covers_them(client: openai.OpenAI) -> None:
    plain = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=Q,
        max_tokens=48,
        temperature=0,
        seed=1,
    )
    refined = client.chat.completions.with_raw_response.create(
        model="gpt-4o-refined",
        messages=Q,
        max_tokens=48,
        temperature=0,
        seed=1,
        extra_headers={"X-Perfics-Trace": "1"},
    )
    assert plain.headers["x-perfics-rounds-planned"] == "0"
    assert refined.headers["x-perfics-rounds-planned"] == "2"
    rounds, reason = (
        int(refined.headers["x-perfics-rounds"]),
        refined.headers["x-perfics-stop-reason"],
    )
    assert rounds > 0 or reason == "no_issues"
    body = refined.parse()
    trace = body.model_extra["perfics"]["trace"]  # type: ignore[index]
    assert trace
    assert all(t["critique"] for t in trace)
    assert body.usage is not None
    assert plain.parse().usage is not None
    assert body.usage.prompt_tokens > plain.parse().usage.prompt_tokens  # type: ignore[union-attr]
    assert body.usage.total_tokens > plain.parse().usage.total_tokens  # type: ignore[union-attr]
    # The draft is the 0-round answer: same model, prompt, seed and temperature.
    if rounds == 0:
        assert body.choices[0].message.content == plain.parse().choices[0].message.content


def test_streamed_final_answer_equals_the_body_answer(client: openai.OpenAI) -> None:
    kwargs = {
        "model": "gpt-4o-refined",
        "messages": Q,
        "max_tokens": 40,
        "temperature": 0,
        "seed": 2,
    }
    whole = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(client.chat.completions.create(stream=True, **kwargs))  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    streamed_perfics = final[0].model_extra["perfics"]
    assert streamed_perfics["rounds"] == whole.model_extra["perfics"]["rounds"]
    assert streamed_perfics["cost_usd"] == whole.model_extra["perfics"]["cost_usd"]
