"""Policies for routing tests, small enough to compute every expected value by hand."""

from __future__ import annotations

import textwrap

import pytest

from routing.policy import Policy
from routing.policy_loader import parse_policy

# p = 100 prompt tokens, a = 200 (general), k = 100, t = 50 give, per round:
#   in  += 2p + 2a + k + 2t = 200 + 400 + 100 + 100 = 800
#   out += k + a            = 100 + 200             = 300
# so in(0..2) = 100, 900, 1700 and out(0..2) = 200, 500, 800.
TWO_MODELS = """
version: 1
default_task: general
weights: {performance: 1.0, refinement: 0.5, cost: 0.05}
cost_reference_usd: 0.001
refinement:
  critique_max_tokens: 100
  template_tokens: 50  # above the short prompts' own estimate, so t = 50
  critique_prompt: "Critique it; reply {stop_phrase} if it is fine."
  rewrite_prompt: "Rewrite it."
tasks:
  general: {max_rounds: 2, answer_tokens: 200}
  short:   {max_rounds: 0, answer_tokens: 50, keywords: [quick, tl;dr]}
  coding:  {max_rounds: 2, answer_tokens: 200, keywords: [python, unit test, c++, function]}
aliases:
  gpt-4o: {task: general}
  cheap: {budget_usd: 0.0004, max_rounds: 1, max_samples: 2}
  coder: {task: coding}
models:
  - id: big
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality: {general: [6.0, 7.0, 7.5], coding: [6.0, 7.0, 7.5]}
  - id: small
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 1000
    input_usd_per_mtok: 0.1
    output_usd_per_mtok: 0.2
    quality: {default: [5.0, 5.5, 5.6]}
"""


def policy_from(text: str, filename: str = "policy.yaml") -> Policy:
    return parse_policy(textwrap.dedent(text), filename)


@pytest.fixture
def two_models() -> Policy:
    return policy_from(TWO_MODELS)


def models_policy(
    models: str, *, weights: str = "{performance: 1.0, refinement: 0.5, cost: 0.05}"
) -> Policy:
    """A one-task policy (general: 2 rounds, 200 answer tokens; k = 100, t = 50) over the
    given ``models:`` YAML block."""
    return policy_from(
        f"""
version: 1
default_task: general
weights: {weights}
refinement:
  critique_max_tokens: 100
  template_tokens: 50
  critique_prompt: "Critique it; reply {{stop_phrase}} if it is fine."
  rewrite_prompt: "Rewrite it."
tasks:
  general: {{max_rounds: 2, answer_tokens: 200}}
models:
{models}
"""
    )


def model_yaml(model_id: str, quality: str, price_in: float, price_out: float) -> str:
    return f"""
  - id: {model_id}
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 4096
    input_usd_per_mtok: {price_in}
    output_usd_per_mtok: {price_out}
    quality: {{default: {quality}}}
"""
