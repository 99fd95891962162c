"""``routing.budget``: the request ceiling's arithmetic, by hand."""

from __future__ import annotations

import sys

import pytest

from routing.budget import Budget, no_budget
from routing.cost import Prices
from routing.estimate import template_tokens
from routing.planner import PlanRequest, plan
from routing.policy import DEFAULT_CRITIQUE_PROMPT, DEFAULT_REWRITE_PROMPT, Policy
from routing.policy_index import index_of

from .conftest import TWO_MODELS, policy_from

PRICES = Prices(1.0, 2.0)  # 1 token in = 1e-6 USD, 1 token out = 2e-6 USD


def test_charges_add_up_at_each_models_price() -> None:
    budget = Budget(0.001)
    budget.charge(PRICES, 100, 50)  # 100 + 100 = 200e-6
    budget.charge(Prices(0.5, 0.5), 200, 200)  # 100 + 100 = 200e-6
    assert budget.spent_usd == pytest.approx(400e-6)
    assert budget.remaining_usd == pytest.approx(600e-6)
    assert budget.allows(600e-6)
    assert not budget.allows(601e-6)
    assert Budget().allows(1e9)
    assert Budget().remaining_usd is None


def test_round_estimate_with_and_without_scoring() -> None:
    # p = 100, a = 200, k = 100, t = 50: 800 in, 300 out -> 800 + 600 = 1400e-6 per round.
    plain = Budget(0.0014).for_model(PRICES, critique_tokens=100, template_tokens=50, scoring=False)
    assert plain.allows_round(100, 200)
    assert (
        not Budget(0.0013999)
        .for_model(PRICES, critique_tokens=100, template_tokens=50, scoring=False)
        .allows_round(100, 200)
    )
    # likelier also scores: up to two prefills of p + a = 300 tokens, 600e-6 more.
    scoring = Budget(0.0019).for_model(
        PRICES, critique_tokens=100, template_tokens=50, scoring=True
    )
    assert not scoring.allows_round(100, 200)
    assert (
        Budget(0.002)
        .for_model(PRICES, critique_tokens=100, template_tokens=50, scoring=True)
        .allows_round(100, 200)
    )


def test_answer_cap_is_what_the_rest_pays_for() -> None:
    budget = Budget(0.001)
    budget.charge(PRICES, 300, 100)  # 500e-6 spent, 500e-6 left
    spending = budget.for_model(PRICES, critique_tokens=10, template_tokens=10, scoring=False)
    # Reading 100 tokens costs 100e-6; 400e-6 left pays for 200 output tokens.
    assert spending.answer_cap(100, 300) == 200
    assert spending.answer_cap(100, 150) == 150
    assert spending.answer_cap(10_000, 300) == 1  # never 0: a request gets an answer
    assert no_budget().answer_cap(100, 300) == 300
    assert not no_budget().applies


@pytest.mark.parametrize("limit", [1e300, 4e302, 1e308, sys.float_info.max])
def test_a_budget_too_large_to_bind_caps_nothing(limit: float) -> None:
    """Issue 21: tokens affordable = ``left / 2e-6`` overflows a float above about 3.6e302 (the
    largest float times 2e-6); such a budget pays for every planned token, and every round."""
    budget = Budget(limit)
    spending = budget.for_model(PRICES, critique_tokens=10, template_tokens=10, scoring=True)
    spending.charge(1_000, 1_000)
    assert spending.answer_cap(100, 300) == 300
    assert spending.allows_round(100, 300)
    assert spending.allows_rewrite(200, 10, 300)
    assert budget.remaining_usd == pytest.approx(limit)


def test_a_budget_too_large_to_bind_plans_as_no_budget(two_models: Policy) -> None:
    free = plan(two_models, PlanRequest(task="general", prompt_tokens=100))
    huge = plan(
        two_models, PlanRequest(task="general", prompt_tokens=100, budget_usd=sys.float_info.max)
    )
    assert (huge.model, huge.rounds, huge.estimated_cost_usd) == (
        free.model,
        free.rounds,
        free.estimated_cost_usd,
    )


def test_template_tokens_are_measured_from_the_prompts() -> None:
    # The default critique prompt alone is ~100 estimated tokens: the old default of 64
    # understated every round.
    measured = template_tokens(DEFAULT_CRITIQUE_PROMPT.format(stop_phrase="NO ISSUES"))
    assert measured == -(-len(DEFAULT_CRITIQUE_PROMPT.format(stop_phrase="NO ISSUES")) // 4) + 8
    policy = policy_from(
        """
version: 1
default_task: general
refinement: {template_tokens: 64}
tasks: {general: {max_rounds: 1, answer_tokens: 10}}
models:
  - {id: m, backend: llamacpp, model: x.gguf, context_window: 4096,
     input_usd_per_mtok: 1.0, output_usd_per_mtok: 1.0, quality: {default: [5.0, 5.0]}}
"""
    )
    expected = max(measured, template_tokens(DEFAULT_REWRITE_PROMPT))
    assert expected > 64
    assert index_of(policy).template_tokens == expected


def test_choices_multiply_the_estimate(two_models: Policy) -> None:
    one = plan(two_models, PlanRequest(task="general", prompt_tokens=100, max_rounds=0))
    three = plan(
        two_models, PlanRequest(task="general", prompt_tokens=100, max_rounds=0, choices=3)
    )
    assert three.estimated_cost_usd == pytest.approx(3 * one.estimated_cost_usd)
    assert three.model == one.model


def test_a_round_that_cannot_fit_the_context_is_not_planned() -> None:
    # small holds 1000 tokens. With p = 500 and a = 200 the draft's p + a = 700 fits, but a
    # rewrite reads p + 2a + k + t = 500 + 400 + 100 + 50 = 1050, which does not.
    policy = policy_from(TWO_MODELS)
    chosen = plan(policy, PlanRequest(task="general", prompt_tokens=500, pinned_model="small"))
    assert chosen.rounds == 0
    reasons = {(c.model, c.rounds): c.reason for c in chosen.candidates}
    assert reasons[("small", 1)] == reasons[("small", 2)] == "context window"
    assert reasons[("small", 0)] is None
