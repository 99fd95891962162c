"""The plan's technique on every response: ``x-perfics-technique`` and
``x-perfics-samples-planned`` beside ``x-perfics-rounds-planned``, and ``technique`` /
``samples_planned`` in the body's ``perfics`` object, for chat completions (streaming and not)
and the Responses API, through the official SDK against a real server with scripted models.

The answers themselves are checked in tests/test_selection.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from proxy.backends.base import Completion
from proxy.backends.scripted import ScriptedBackend
from proxy.results import Usage
from tests.conftest import POLICIES, InProcessServer

# alpha lists best_of 4 for general (Q 8 against a draft's 5): the planner picks it.
# p = 8 ("Explain tides." is 14 characters: ceil(14 / 4) + 4), a = 100. alpha is embedded, so
# its samples are scored: in 4 (2p + a) = 464, out 4a = 400, at 1.0 / 2.0 USD per million:
# 0.001264 USD. A draft: in 8, out 100: 0.000208.
SELECTING = """\
version: 1
default_task: general
refinement:
  critique_max_tokens: 100
  template_tokens: 40
  critique_prompt: "Review your previous answer. List problems, or reply exactly {stop_phrase}."
  rewrite_prompt: "Now write the complete improved answer only."
tasks:
  general: {max_rounds: 1, max_samples: 4, answer_tokens: 100}
models:
  - id: alpha
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality:
      general: {refine: [5.0, 5.0], best_of: {4: 8.0}}
"""
Q = [{"role": "user", "content": "Explain tides."}]
DRAFT = Completion("Tides follow the moon.", "stop", Usage(7, 6))


class Served:
    def __init__(self, policy: Path) -> None:
        self.alpha = ScriptedBackend("alpha", default=DRAFT)
        self.beta = ScriptedBackend("beta", default=DRAFT)
        self.server = InProcessServer(policy, {"alpha": self.alpha, "beta": self.beta})
        self.client = openai.OpenAI(
            base_url=f"{self.server.base_url}/v1", api_key="x", max_retries=0
        )


@pytest.fixture
def selecting(tmp_path: Path) -> Iterator[Served]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(SELECTING)
    served = Served(policy)
    yield served
    served.server.stop()


def test_a_best_of_plan_is_named_in_the_headers_and_the_body(selecting: Served) -> None:
    raw = selecting.client.chat.completions.with_raw_response.create(model="auto", messages=Q)  # type: ignore[arg-type]
    h = raw.headers
    assert (h["x-perfics-technique"], h["x-perfics-samples-planned"]) == ("best_of", "4")
    assert h["x-perfics-rounds-planned"] == "0"
    assert Decimal(h["x-perfics-estimated-cost-usd"]) == Decimal("0.001264")
    perfics = raw.parse().model_extra["perfics"]  # type: ignore[index]
    assert (perfics["technique"], perfics["samples_planned"]) == ("best_of", 4)
    assert perfics["rounds_planned"] == 0
    assert perfics["estimated_cost_usd"] == 0.001264


def test_a_stream_carries_the_technique_in_its_headers(selecting: Served) -> None:
    with httpx.stream(
        "POST",
        f"{selecting.server.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": Q, "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-perfics-technique"] == "best_of"
        assert response.headers["x-perfics-samples-planned"] == "4"
        body = response.read().decode()
    assert '"technique":"best_of"' in body.replace(" ", "")


def test_the_declared_cap_and_several_choices_plan_the_draft(selecting: Served) -> None:
    capped = selecting.client.chat.completions.with_raw_response.create(
        model="auto",
        messages=Q,  # type: ignore[arg-type]
        extra_headers={"X-Perfics-Max-Samples": "1"},
    )
    assert capped.headers["x-perfics-technique"] == "draft"
    assert capped.headers["x-perfics-samples-planned"] == "1"
    assert Decimal(capped.headers["x-perfics-estimated-cost-usd"]) == Decimal("0.000208")
    two = selecting.client.chat.completions.with_raw_response.create(
        model="auto",
        messages=Q,  # type: ignore[arg-type]
        n=2,
    )
    assert (two.headers["x-perfics-technique"], two.headers["x-perfics-samples-planned"]) == (
        "draft",
        "1",
    )
    refused = httpx.post(
        f"{selecting.server.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": Q, "perfics": {"max_samples": "4"}},
        timeout=30,
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "max_samples"


def test_the_responses_api_says_the_same(selecting: Served) -> None:
    raw = selecting.client.responses.with_raw_response.create(model="auto", input="Explain tides.")
    assert raw.headers["x-perfics-technique"] == "best_of"
    assert raw.headers["x-perfics-samples-planned"] == "4"


def test_a_policy_without_techniques_names_draft_or_refine(tmp_path: Path) -> None:
    served = Served(POLICIES / "scripted.yaml")
    try:
        raw = served.client.chat.completions.with_raw_response.create(
            model="auto",
            messages=Q,  # type: ignore[arg-type]
            extra_headers={"X-Perfics-Max-Rounds": "0"},
        )
        assert (raw.headers["x-perfics-technique"], raw.headers["x-perfics-samples-planned"]) == (
            "draft",
            "1",
        )
        served.alpha.queue(
            DRAFT,
            Completion("It is fine.", "stop", Usage(30, 4)),
            Completion("Tides follow the moon and the sun.", "stop", Usage(40, 8)),
        )
        refined = served.client.chat.completions.with_raw_response.create(
            model="auto",
            messages=Q,  # type: ignore[arg-type]
            extra_headers={"X-Perfics-Max-Rounds": "1"},
        )
        assert refined.headers["x-perfics-technique"] == "refine"
        assert refined.headers["x-perfics-rounds-planned"] == "1"
        assert refined.parse().model_extra["perfics"]["samples_planned"] == 1  # type: ignore[index]
    finally:
        served.server.stop()
