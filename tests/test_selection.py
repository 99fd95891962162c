"""Selection among samples end to end (docs/architecture.md, "Selection"): the official OpenAI
SDK against a real server whose scripted model answers in a known order, so which answer wins,
by which rule, what it cost and what a stream shows are all checked exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from proxy.backends.base import Completion
from proxy.backends.scripted import ScriptedBackend
from proxy.results import Usage
from proxy.selection.select import normal_form
from tests.conftest import InProcessServer

POLICY = """\
version: 1
default_task: general
selection: {temperature: 0.7, checks: true, time_limit_s: 20}
tasks:
  general: {max_rounds: 0, max_samples: 4, answer_tokens: 100}
  math: {max_rounds: 0, max_samples: 4, answer_tokens: 100, keywords: [sum]}
models:
  - id: alpha
    backend: openai
    model: m
    api_base: http://127.0.0.1:9/v1
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    defaults: {temperature: 0.2, max_tokens: 64}
    quality:
      general: {refine: [5.0], best_of: {4: 8.0}}
      math: {refine: [5.0], vote: {4: 8.0}}
"""
CODING: list[ChatCompletionMessageParam] = [
    {
        "role": "user",
        "content": "Complete the function.\n\ndef add(a, b):\n"
        '    """Add two numbers.\n    >>> add(2, 3)\n    5\n    """\n',
    }
]


def code(body: str) -> Completion:
    return Completion(f"```python\ndef add(a, b):\n    return {body}\n```", "stop", Usage(30, 12))


class Served:
    def __init__(self, tmp_path: Path) -> None:
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY)
        self.alpha = ScriptedBackend("alpha")
        self.server = InProcessServer(policy, {"alpha": self.alpha}, keepalive_s=0.05)
        self.base_url = self.server.base_url
        self.client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="x", max_retries=0)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    service = Served(tmp_path)
    yield service
    service.server.stop()


def test_best_of_keeps_the_sample_that_passes_the_prompts_examples(served: Served) -> None:
    served.alpha.queue(code("a - b"), code("a * b"), code("a + b"), code("b - a"))
    raw = served.client.chat.completions.with_raw_response.create(
        model="auto",
        messages=CODING,
        seed=7,
    )
    answer = raw.parse()
    assert "return a + b" in (answer.choices[0].message.content or "")
    headers = raw.headers
    assert headers["x-perfics-technique"] == "best_of"
    assert headers["x-perfics-samples-planned"] == "4"
    assert headers["x-perfics-selected-by"] == "checks"
    # Every call is paid for: the draft and three samples, 30 + 12 tokens each.
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (120, 48)
    assert headers["x-perfics-cost-usd"] == "0.000216"  # (120 * 1 + 48 * 2) / 1e6
    perfics = answer.model_extra["perfics"]  # type: ignore[index]
    assert (perfics["samples"], perfics["selected_by"]) == (4, "checks")
    draft, *samples = served.alpha.calls
    # The draft at the model's default temperature, the samples at selection's, each seeded.
    assert draft.params.temperature == 0.2
    assert draft.params.seed == 7
    assert [c.params.temperature for c in samples] == [0.7] * 3
    assert [c.params.seed for c in samples] == [8, 9, 10]


def test_a_draft_that_passes_is_kept_without_sampling(served: Served) -> None:
    served.alpha.queue(code("a + b"))
    raw = served.client.chat.completions.with_raw_response.create(
        model="auto",
        messages=CODING,
    )
    assert raw.headers["x-perfics-selected-by"] == "checks"
    assert len(served.alpha.calls) == 1


def test_when_no_sample_passes_the_draft_is_kept(served: Served) -> None:
    served.alpha.queue(code("a - b"), code("a * b"), code("0"), code("b"))
    raw = served.client.chat.completions.with_raw_response.create(
        model="auto",
        messages=CODING,
    )
    assert "return a - b" in (raw.parse().choices[0].message.content or "")
    assert raw.headers["x-perfics-selected-by"] == "draft"
    assert len(served.alpha.calls) == 4


def test_a_request_without_checks_is_answered_by_its_draft_alone(served: Served) -> None:
    served.alpha.queue("Tides follow the moon.")
    raw = served.client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Explain tides."}]
    )
    assert raw.headers["x-perfics-technique"] == "best_of"
    assert raw.headers["x-perfics-selected-by"] == "draft"
    assert len(served.alpha.calls) == 1  # nothing could tell samples apart: none was made


def test_a_json_schema_is_a_check(served: Served) -> None:
    served.alpha.queue('{"city": 3}', '{"city": "Paris"}', '{"town": "x"}', "no")
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    raw = served.client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "The capital of France as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert raw.parse().choices[0].message.content == '{"city": "Paris"}'
    assert raw.headers["x-perfics-selected-by"] == "checks"


def test_vote_keeps_the_answer_most_samples_agree_on(served: Served) -> None:
    served.alpha.queue("The sum is 41.", "42", "It is 42.", "43")
    raw = served.client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is the sum of 40 and 2?"}]
    )
    assert raw.headers["x-perfics-technique"] == "vote"
    assert raw.parse().choices[0].message.content == "42"
    assert raw.headers["x-perfics-selected-by"] == "agreement"


def test_vote_ties_go_to_the_drafts_answer(served: Served) -> None:
    served.alpha.queue("7", "8", "9", "10")
    raw = served.client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "The sum of anything?"}]
    )
    assert raw.parse().choices[0].message.content == "7"
    assert raw.headers["x-perfics-selected-by"] == "draft"


def test_a_stream_shows_the_sampling_then_the_chosen_answer(served: Served) -> None:
    served.alpha.queue(code("a - b"), code("a * b"), code("a + b"), code("b - a"))
    with httpx.stream(
        "POST",
        f"{served.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": CODING, "stream": True},
        timeout=30,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert ": perfics sampling 1/4" in lines
    assert ": perfics sampling 4/4" in lines
    assert lines.index(": perfics sampling 4/4") < next(
        i for i, line in enumerate(lines) if line.startswith("data: {")
    )
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "return a + b" in text
    assert lines[-1] == "data: [DONE]"


def test_the_client_may_cap_samples(served: Served) -> None:
    served.alpha.queue(code("a - b"))
    raw = served.client.chat.completions.with_raw_response.create(
        model="auto",
        messages=CODING,
        extra_headers={"X-Perfics-Max-Samples": "1"},
    )
    assert raw.headers["x-perfics-technique"] == "draft"
    assert "x-perfics-selected-by" not in raw.headers
    assert len(served.alpha.calls) == 1


def test_a_budget_that_pays_for_the_draft_only_keeps_the_draft(served: Served) -> None:
    # The plan's best_of costs ~0.0008 USD here; the draft alone ~0.0002.
    served.alpha.queue(code("a - b"), code("a + b"))
    with pytest.raises(openai.BadRequestError) as caught:
        served.client.chat.completions.create(
            model="auto",
            messages=CODING,
            extra_body={"perfics": {"budget_usd": 0.00001}},
        )
    assert caught.value.code == "budget_exceeded"


def test_a_models_max_tokens_bounds_only_answers_the_client_left_uncapped(served: Served) -> None:
    served.alpha.queue(
        Completion("one", "stop", Usage(5, 1)), Completion("two", "stop", Usage(5, 1))
    )
    ask = [{"role": "user", "content": "Say one word."}]
    served.client.chat.completions.create(model="auto", messages=ask)  # type: ignore[arg-type]
    served.client.chat.completions.create(
        model="auto",
        messages=ask,  # type: ignore[arg-type]
        max_tokens=500,
    )
    assert [call.params.max_tokens for call in served.alpha.calls] == [64, 500]


def test_normal_forms() -> None:
    assert normal_form("The answer is 1,000.50") == normal_form("1000.5") == "#1000.5"
    assert normal_form("x = 42.0") == "#42"
    assert normal_form("  Paris\n") == normal_form("paris") == "paris"
