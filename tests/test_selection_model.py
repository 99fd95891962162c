"""Selection and ``n`` on the real bundled SmolLM2 through llama.cpp: samples made in one batch
sharing the prompt (the prompt is read, and paid for, once), scored by the model's own
likelihood when several pass, and the request's code examples run in the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import ServerProcess

pytestmark = [pytest.mark.model, pytest.mark.slow]

POLICY = """\
version: 1
default_task: coding
tasks:
  coding: {max_rounds: 0, max_samples: 4, answer_tokens: 96}
models:
  - id: smollm2-135m
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 2048
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality:
      coding: {refine: [0.3], best_of: {4: 1.5}}
"""
PROMPT = (
    "Complete this Python function and answer with its code only.\n\n"
    "def double(x):\n"
    '    """Return twice x.\n'
    "    >>> double(2)\n"
    "    4\n"
    "    >>> double(5)\n"
    "    10\n"
    '    """\n'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    policy: Path = tmp_path_factory.mktemp("selection") / "policy.yaml"
    policy.write_text(POLICY)
    process = ServerProcess(policy)
    yield process
    process.stop()


def test_best_of_on_the_embedded_model(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": PROMPT}], seed=3, temperature=0.0
    )
    answer = raw.parse()
    assert raw.headers["x-perfics-technique"] == "best_of"
    assert raw.headers["x-perfics-selected-by"] in ("checks", "likelihood", "draft")
    perfics = answer.model_extra["perfics"]  # type: ignore[index]
    # The draft passed (1 answer made) or the three samples were made too.
    assert perfics["samples"] in (1, 4)
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0
    if perfics["selected_by"] != "draft" or perfics["samples"] == 1:
        assert "def double" in (answer.choices[0].message.content or "")


def test_n_choices_share_one_prompt(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name a colour."}]
    one = client.chat.completions.create(model="auto", messages=question, max_tokens=8, seed=1)
    three = client.chat.completions.create(
        model="auto", messages=question, max_tokens=8, n=3, seed=1, temperature=0.9
    )
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert one.usage is not None
    assert three.usage is not None
    # Made in one batch: the prompt was read once for the three choices.
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
