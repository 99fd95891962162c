"""Planning: candidates, PeRFICS ranking, budgets, caps, exclusions and tie-breaks.

Expected values are computed by hand in the comments, with p = 100, a = 200, k = 100, t = 50
(see conftest: in(0..2) = 100, 900, 1700 tokens; out(0..2) = 200, 500, 800 tokens).
"""

from __future__ import annotations

import math

import pytest

from routing.errors import (
    BudgetExceeded,
    ContextLengthExceeded,
    InvalidDeclaration,
    ModelsUnavailable,
    NoEligiblePlan,
    UnknownModel,
)
from routing.planner import Candidate, PlanRequest, plan
from routing.policy import Policy

from .conftest import model_yaml, models_policy

# big:   C = (in * 1.0 + out * 2.0) / 1e6  -> 0.0005, 0.0019, 0.0033
#   r0: 0.6                     - 0.05 log10(0.5)  = 0.6 + 0.0150515 = 0.6150515
#   r1: 0.7 + 0.5 (1.0 / 6.0)   - 0.05 log10(1.9)  = 0.7833333 - 0.0139377 = 0.7693956
#   r2: 0.75 + 0.5 (1.5 / 6.0)  - 0.05 log10(3.3)  = 0.875 - 0.0259257 = 0.8490743
# small: C = (in * 0.1 + out * 0.2) / 1e6 -> 0.00005, 0.00019, 0.00033
#   r0: 0.5                     - 0.05 log10(0.05) = 0.5 + 0.0650515 = 0.5650515
#   r1: 0.55 + 0.5 (0.5 / 5.0)  - 0.05 log10(0.19) = 0.6 + 0.0360623 = 0.6360623
#   r2: 0.56 + 0.5 (0.6 / 5.0)  - 0.05 log10(0.33) = 0.62 + 0.0240743 = 0.6440743
BIG = {0: (0.0005, 0.6150515), 1: (0.0019, 0.7693956), 2: (0.0033, 0.8490743)}
SMALL = {0: (0.00005, 0.5650515), 1: (0.00019, 0.6360623), 2: (0.00033, 0.6440743)}


def request(**overrides: object) -> PlanRequest:
    values: dict[str, object] = {"task": "general", "prompt_tokens": 100}
    values.update(overrides)
    return PlanRequest(**values)  # type: ignore[arg-type]


def by_key(candidates: tuple[Candidate, ...]) -> dict[tuple[str, int], Candidate]:
    return {(c.model, c.rounds): c for c in candidates}


def test_every_candidate_scored_as_computed_by_hand(two_models: Policy) -> None:
    chosen = plan(two_models, request())
    assert (chosen.model, chosen.rounds) == ("big", 2)
    assert chosen.score == pytest.approx(0.8490743, abs=1e-6)
    assert chosen.estimated_cost_usd == pytest.approx(0.0033, rel=1e-12)
    assert (chosen.estimate.p, chosen.estimate.a, chosen.estimate.k, chosen.estimate.t) == (
        100,
        200,
        100,
        50,
    )
    table = by_key(chosen.candidates)
    for model, expected in (("big", BIG), ("small", SMALL)):
        for rounds, (cost, score) in expected.items():
            candidate = table[(model, rounds)]
            assert candidate.eligible
            assert candidate.reason is None
            assert candidate.estimated_cost_usd == pytest.approx(cost, rel=1e-12)
            assert candidate.score == pytest.approx(score, abs=1e-6)
    scores = [c.score for c in chosen.candidates]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]


def test_attempts_are_the_best_per_model_best_first(two_models: Policy) -> None:
    chosen = plan(two_models, request())
    attempts = chosen.attempts()
    assert [(c.model, c.rounds) for c in attempts] == [("big", 2), ("small", 2)]
    assert attempts[0].score == chosen.score
    assert attempts[0].estimated_cost_usd == chosen.estimated_cost_usd


def test_winner_score_equals_its_candidate_row_exactly(two_models: Policy) -> None:
    chosen = plan(two_models, request(budget_usd=0.002))
    first = chosen.candidates[0]
    assert (first.model, first.rounds, first.score) == (chosen.model, chosen.rounds, chosen.score)


def test_budget_cuts_rounds(two_models: Policy) -> None:
    # 0.002 admits big r0 (0.0005) and r1 (0.0019), not r2 (0.0033): big r1 (0.769) beats
    # small r2 (0.644).
    chosen = plan(two_models, request(budget_usd=0.002))
    assert (chosen.model, chosen.rounds) == ("big", 1)
    assert chosen.score == pytest.approx(BIG[1][1], abs=1e-6)
    over = by_key(chosen.candidates)[("big", 2)]
    assert not over.eligible
    assert over.reason == "over budget"
    assert over.score == pytest.approx(BIG[2][1], abs=1e-6)


def test_budget_exactly_equal_to_a_cost_admits_it(two_models: Policy) -> None:
    chosen = plan(two_models, request(budget_usd=0.0019))
    assert (chosen.model, chosen.rounds) == ("big", 1)


def test_budget_that_admits_only_zero_rounds(two_models: Policy) -> None:
    # 0.0001: small r0 (0.00005) fits; small r1 (0.00019) and all of big do not.
    chosen = plan(two_models, request(budget_usd=0.0001))
    assert (chosen.model, chosen.rounds) == ("small", 0)
    assert chosen.score == pytest.approx(SMALL[0][1], abs=1e-6)
    assert [c.reason for c in chosen.candidates if not c.eligible] == ["over budget"] * 5
    assert [(c.model, c.rounds) for c in chosen.attempts()] == [("small", 0)]


def test_budget_exceeded_names_the_cheapest_plan(two_models: Policy) -> None:
    with pytest.raises(BudgetExceeded) as caught:
        plan(two_models, request(budget_usd=0.00001))
    error = caught.value
    assert error.message == (
        "no plan fits the budget of 0.00001 USD; the cheapest plan (small, 0 rounds) "
        "costs 0.00005 USD"
    )
    assert error.cheapest_cost_usd == pytest.approx(0.00005, rel=1e-12)
    assert (error.code, error.param) == ("budget_exceeded", "budget_usd")


def test_zero_budget_is_a_budget(two_models: Policy) -> None:
    with pytest.raises(BudgetExceeded):
        plan(two_models, request(budget_usd=0.0))


def test_declared_cap_below_the_task_rounds(two_models: Policy) -> None:
    # cap 1: big r1 (0.769) beats small r1 (0.636); every r2 is above the cap.
    chosen = plan(two_models, request(max_rounds=1))
    assert (chosen.model, chosen.rounds) == ("big", 1)
    table = by_key(chosen.candidates)
    assert table[("big", 2)].reason == "rounds above cap"
    assert table[("small", 2)].reason == "rounds above cap"
    zero = plan(two_models, request(max_rounds=0))
    assert (zero.model, zero.rounds) == ("big", 0)


def test_rounds_limited_by_quality_list_and_task() -> None:
    # Quality lists of 2 entries allow at most 1 round although the task allows 2.
    policy = models_policy(model_yaml("m", "[5.0, 6.0]", 1.0, 1.0))
    chosen = plan(policy, request())
    assert {c.rounds for c in chosen.candidates} == {0, 1}


def test_model_excluded_by_context_window(two_models: Policy) -> None:
    # small holds 1000 tokens: p + a = 800 + 200 fits exactly, 801 + 200 does not.
    assert "small" in {c.model for c in plan(two_models, request(prompt_tokens=800)).attempts()}
    chosen = plan(two_models, request(prompt_tokens=801, budget_usd=1.0))
    excluded = [c for c in chosen.candidates if c.model == "small"]
    assert [(c.rounds, c.eligible, c.reason) for c in excluded] == [(0, False, "context window")]


def test_max_tokens_caps_the_answer(two_models: Policy) -> None:
    assert plan(two_models, request(max_tokens=50)).estimate.a == 50
    assert plan(two_models, request(max_tokens=5000)).estimate.a == 200


def test_task_missing_from_quality_falls_back_to_default(two_models: Policy) -> None:
    # "short" (0 rounds, a = 50): big has no list for it and no default; small uses default.
    # small r0: C = (100 * 0.1 + 50 * 0.2) / 1e6 = 0.00002;
    #   0.5 - 0.05 log10(0.02) = 0.5 + 0.0849485 = 0.5849485
    chosen = plan(two_models, request(task="short"))
    assert (chosen.model, chosen.rounds) == ("small", 0)
    assert chosen.score == pytest.approx(0.5849485, abs=1e-6)
    big = by_key(chosen.candidates)[("big", 0)]
    assert (big.eligible, big.reason, big.score) == (False, "no quality for task", None)
    assert big.estimated_cost_usd == pytest.approx((100 * 1.0 + 50 * 2.0) / 1e6, rel=1e-12)


def test_pinned_model_and_readiness(two_models: Policy) -> None:
    pinned = plan(two_models, request(pinned_model="small"))
    assert (pinned.model, pinned.rounds) == ("small", 2)
    assert by_key(pinned.candidates)[("big", 0)].reason == "not pinned"
    assert [c.model for c in pinned.attempts()] == ["small"]
    ready = plan(two_models, request(ready=frozenset({"small"})))
    assert ready.model == "small"
    assert by_key(ready.candidates)[("big", 0)].reason == "backend not ready"


def test_no_eligible_plan_says_why_per_model(two_models: Policy) -> None:
    with pytest.raises(NoEligiblePlan) as caught:
        plan(two_models, request(prompt_tokens=900, ready=frozenset({"small"})))
    assert caught.value.code == "no_eligible_model"
    assert "big: backend not ready" in caught.value.message
    assert "small: context window" in caught.value.message


def test_only_readiness_missing_is_model_unavailable(two_models: Policy) -> None:
    # The proxy answers it 503: a retry may find a backend ready.
    with pytest.raises(ModelsUnavailable) as caught:
        plan(two_models, request(ready=frozenset()))
    assert caught.value.code == "model_unavailable"
    assert "big, small" in caught.value.message


def test_a_prompt_no_model_holds_is_openais_context_length_exceeded(two_models: Policy) -> None:
    # "big" has no quality for the task, "small" holds 1000 tokens: the prompt fits no
    # candidate, which clients (LangChain, pydantic-ai) recognise by this code.
    with pytest.raises(ContextLengthExceeded) as caught:
        plan(two_models, request(task="short", prompt_tokens=5000, max_tokens=50))
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "messages")
    assert "maximum context length is 1000 tokens" in caught.value.message
    assert "about 5000 tokens" in caught.value.message


def test_unknown_task_and_pinned_model(two_models: Policy) -> None:
    with pytest.raises(InvalidDeclaration) as caught:
        plan(two_models, request(task="astrology"))
    assert caught.value.param == "task"
    with pytest.raises(UnknownModel):
        plan(two_models, request(pinned_model="nope"))


def test_zero_price_model_uses_the_cost_floor() -> None:
    # C = 0 is floored at 1e-12: cost term 0.05 log10(1e-12 / 1e-3) = 0.05 * -9 = -0.45.
    # r0: 0.4 + 0.45 = 0.85; r1 (Q 4.0 again): 0.4 + 0.5 * 0 + 0.45 = 0.85, a tie at equal
    # cost (0), so fewer rounds win.
    policy = models_policy(model_yaml("free", "[4.0, 4.0]", 0.0, 0.0))
    chosen = plan(policy, request())
    assert (chosen.model, chosen.rounds) == ("free", 0)
    assert chosen.score == pytest.approx(0.85, abs=1e-12)
    assert chosen.estimated_cost_usd == 0.0
    assert [c.score for c in chosen.candidates] == [chosen.score, chosen.score]


def test_zero_first_quality_has_no_refinement_term() -> None:
    # Q = [0, 2]: r1 = 0.2 + 0 (Q_0 = 0) - 0.05 log10(C1 / 0.001), C1 = (900 + 500) / 1e6.
    policy = models_policy(model_yaml("m", "[0.0, 2.0]", 1.0, 1.0))
    r1 = by_key(plan(policy, request()).candidates)[("m", 1)]
    assert r1.score == pytest.approx(0.2 - 0.05 * math.log10(0.0014 / 0.001), abs=1e-12)


def test_tie_on_score_goes_to_the_lower_cost() -> None:
    # With no cost weight the scores are the quality terms only: equal for both models.
    models = model_yaml("pricey", "[5.0]", 2.0, 2.0) + model_yaml("thrifty", "[5.0]", 1.0, 1.0)
    policy = models_policy(models, weights="{performance: 1.0, refinement: 0.5, cost: 0.0}")
    chosen = plan(policy, request())
    assert chosen.model == "thrifty"
    assert [c.model for c in chosen.attempts()] == ["thrifty", "pricey"]


def test_tie_on_score_and_cost_goes_to_the_model_id() -> None:
    models = model_yaml("zeta", "[5.0, 6.0]", 1.0, 1.0) + model_yaml(
        "alpha", "[5.0, 6.0]", 1.0, 1.0
    )
    chosen = plan(models_policy(models), request())
    assert [(c.model, c.rounds) for c in chosen.attempts()] == [("alpha", 1), ("zeta", 1)]


def test_near_tie_is_decided_by_score_not_cost() -> None:
    # Scores differ by 1e-6 / 10 * 1.0 = 1e-7: the dearer, slightly better model still wins.
    models = model_yaml("cheap", "[5.0]", 1.0, 1.0) + model_yaml("better", "[5.000001]", 9.0, 9.0)
    policy = models_policy(models, weights="{performance: 1.0, refinement: 0.5, cost: 0.0}")
    chosen = plan(policy, request())
    assert chosen.model == "better"
    assert chosen.candidates[1].model == "cheap"
    assert chosen.score - chosen.candidates[1].score == pytest.approx(1e-7, rel=1e-3)  # type: ignore[operator]


def test_ineligible_candidates_follow_eligible_ones(two_models: Policy) -> None:
    chosen = plan(two_models, request(budget_usd=0.0004))
    eligible = [c.eligible for c in chosen.candidates]
    assert eligible == sorted(eligible, reverse=True)
    assert (chosen.model, chosen.rounds) == ("small", 2)
