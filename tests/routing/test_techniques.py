"""Planning selection techniques (best_of, vote) beside refinement rounds: candidates, costs with
k samples (scored where the backend measures likelihood), caps, exclusions and tie-breaks.

Expected values are computed by hand below, with p = 100, a = 200, critique k = 100, t = 50 and
both models priced 1.0 USD in, 2.0 USD out per million tokens:

    draft          in 100,                    out 200   C = 0.0005
    refine r1      in 100 + 800 = 900,        out 500   C = 0.0019
    best_of 4      local (scores): in 4(2p + a) = 1600, out 800   C = 0.0032
                   remote (cannot score): in 4p = 400, out 800    C = 0.0020
    best_of 8      local: in 3200, out 1600                        C = 0.0064
    vote 4         in 400, out 800                                 C = 0.0020

PeRFICS (weights 1.0, 0.5, 0.05; reference 0.001), with Q_0 = 4:

    draft      Q 4: 0.4                 - 0.05 log10(0.5) = 0.4150515
    refine r1  Q 4: 0.4                 - 0.05 log10(1.9) = 0.3860623
    best_of 4  Q 5: 0.5 + 0.5 (1/4)     - 0.05 log10(3.2) = 0.5997425  (local)
                                        - 0.05 log10(2.0) = 0.6099485  (remote)
    best_of 8  Q 6: 0.6 + 0.5 (2/4)     - 0.05 log10(6.4) = 0.8096910
    vote 4     Q 5: 0.625               - 0.05 log10(2.0) = 0.6099485
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing.cost import cost_usd
from routing.decision import KeyScope, RequestFacts, decide
from routing.errors import BudgetExceeded, KeyLimit
from routing.planner import Candidate, PlanRequest, plan
from routing.policy import Policy
from routing.policy_index import index_of
from routing.techniques import Technique

from .conftest import policy_from

TECHNIQUES = """
version: 1
default_task: coding
refinement:
  critique_max_tokens: 100
  template_tokens: 50
  critique_prompt: "Critique it; reply {stop_phrase} if it is fine."
  rewrite_prompt: "Rewrite it."
selection: {temperature: 0.7, checks: false, time_limit_s: 5}
tasks:
  coding: {max_rounds: 1, max_samples: 8, answer_tokens: 200}
  general: {max_rounds: 1, answer_tokens: 200}
aliases:
  few: {max_samples: 4}
models:
  - id: local
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    defaults: {temperature: 0.2, top_k: 40}
    quality:
      coding: {refine: [4.0, 4.0], best_of: {8: 6.0, 4: 5.0}, vote: {4: 5.0}}
      general: {refine: [4.0], best_of: {4: 9.0}}
  - id: remote
    backend: openai
    model: upstream
    api_base: http://127.0.0.1:9/v1
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality:
      coding: {refine: [4.0, 4.0], best_of: {4: 5.0}, vote: {4: 5.0}}
"""
DRAFT = (0.0005, 0.4150515)
REFINE_1 = (0.0019, 0.3860623)
LOCAL: dict[tuple[Technique, int], tuple[float, float]] = {
    ("best_of", 4): (0.0032, 0.5997425),
    ("best_of", 8): (0.0064, 0.8096910),
    ("vote", 4): (0.0020, 0.6099485),
}
REMOTE: dict[tuple[Technique, int], tuple[float, float]] = {
    ("best_of", 4): (0.0020, 0.6099485),
    ("vote", 4): (0.0020, 0.6099485),
}


@pytest.fixture
def techniques() -> Policy:
    return policy_from(TECHNIQUES)


def request(**overrides: object) -> PlanRequest:
    values: dict[str, object] = {"task": "coding", "prompt_tokens": 100}
    values.update(overrides)
    return PlanRequest(**values)  # type: ignore[arg-type]


def by_key(candidates: tuple[Candidate, ...]) -> dict[tuple[str, str, int], Candidate]:
    return {(c.model, c.technique, c.rounds + c.samples - 1): c for c in candidates}


def test_every_technique_is_a_candidate_scored_as_computed_by_hand(techniques: Policy) -> None:
    chosen = plan(techniques, request())
    assert (chosen.model, chosen.technique, chosen.samples, chosen.rounds) == (
        "local",
        "best_of",
        8,
        0,
    )
    assert chosen.score == pytest.approx(0.8096910, abs=1e-6)
    assert chosen.estimated_cost_usd == pytest.approx(0.0064, rel=1e-12)
    table = {
        (c.model, c.technique, c.samples if c.samples > 1 else c.rounds): c
        for c in chosen.candidates
    }
    expected: dict[tuple[str, Technique, int], tuple[float, float]] = {
        ("local", "draft", 0): DRAFT,
        ("local", "refine", 1): REFINE_1,
        ("remote", "draft", 0): DRAFT,
        ("remote", "refine", 1): REFINE_1,
        **{("local", t, k): v for (t, k), v in LOCAL.items()},
        **{("remote", t, k): v for (t, k), v in REMOTE.items()},
    }
    assert set(table) == set(expected)
    for key, (cost, score) in expected.items():
        candidate = table[key]
        assert candidate.eligible
        assert candidate.reason is None
        assert candidate.estimated_cost_usd == pytest.approx(cost, rel=1e-12), key
        assert candidate.score == pytest.approx(score, abs=1e-6), key
        assert candidate.rounds == 0 or candidate.samples == 1
    assert chosen.candidates[0] == chosen.attempts()[0]
    first = chosen.candidates[0]
    assert (first.score, first.estimated_cost_usd) == (chosen.score, chosen.estimated_cost_usd)


def test_the_fallback_order_carries_each_models_technique(techniques: Policy) -> None:
    attempts = plan(techniques, request()).attempts()
    # remote: best_of 4 and vote 4 tie on score and cost; best_of ranks first.
    assert [(c.model, c.technique, c.samples, c.rounds) for c in attempts] == [
        ("local", "best_of", 8, 0),
        ("remote", "best_of", 4, 0),
    ]


def test_tokens_price_the_estimated_cost(techniques: Policy) -> None:
    chosen = plan(techniques, request())
    assert chosen.tokens() == (3200, 1600)  # 8 (2p + a) in, scored; 8a out
    remote = chosen.attempts()[1]
    assert chosen.tokens(remote) == (400, 800)  # 4p in: remote cannot score
    for candidate in chosen.candidates:
        prices = index_of(techniques).prices[candidate.model]
        assert cost_usd(prices, *chosen.tokens(candidate)) == candidate.estimated_cost_usd


def test_a_declared_sample_cap_and_the_tie_between_techniques(techniques: Policy) -> None:
    # Cap 4: local's best_of 8 is above it; local vote 4 and remote best_of 4 tie exactly on
    # score (0.6099485) and cost (0.0020): best_of ranks before vote.
    chosen = plan(techniques, request(max_samples=4))
    assert (chosen.model, chosen.technique, chosen.samples) == ("remote", "best_of", 4)
    assert chosen.score == pytest.approx(0.6099485, abs=1e-6)
    above = by_key(chosen.candidates)[("local", "best_of", 7)]
    assert not above.eligible
    assert above.reason == "samples above cap"
    assert above.score == pytest.approx(0.8096910, abs=1e-6)
    assert [(c.model, c.technique) for c in chosen.attempts()] == [
        ("remote", "best_of"),
        ("local", "vote"),
    ]


@pytest.mark.parametrize("cap", [0, 1])
def test_a_cap_of_one_or_none_plans_no_samples(techniques: Policy, cap: int) -> None:
    chosen = plan(techniques, request(max_samples=cap))
    assert (chosen.model, chosen.technique, chosen.samples) == ("local", "draft", 1)
    sampled = [c for c in chosen.candidates if c.samples > 1]
    assert len(sampled) == 5
    assert {c.reason for c in sampled} == {"samples above cap"}


def test_a_budget_cuts_samples(techniques: Policy) -> None:
    chosen = plan(techniques, request(budget_usd=0.0025))
    assert (chosen.model, chosen.technique, chosen.samples) == ("remote", "best_of", 4)
    table = by_key(chosen.candidates)
    assert table[("local", "best_of", 3)].reason == "over budget"  # 0.0032
    assert table[("local", "best_of", 7)].reason == "over budget"  # 0.0064
    assert table[("local", "vote", 3)].eligible  # 0.0020


def test_a_budget_below_every_sample_keeps_the_draft(techniques: Policy) -> None:
    chosen = plan(techniques, request(budget_usd=0.0005))
    assert (chosen.model, chosen.technique) == ("local", "draft")
    with pytest.raises(BudgetExceeded) as caught:
        plan(techniques, request(budget_usd=0.0001))
    assert "the cheapest plan (local, 0 rounds) costs 0.0005 USD" in caught.value.message


def test_several_choices_are_never_selected_among(techniques: Policy) -> None:
    chosen = plan(techniques, request(choices=2))
    # Two drafts: 0.001 on either model, equal scores: the model id decides.
    assert (chosen.model, chosen.technique, chosen.samples) == ("local", "draft", 1)
    sampled = [c for c in chosen.candidates if c.samples > 1]
    assert len(sampled) == 5
    assert {c.reason for c in sampled} == {"n > 1"}
    assert all(not c.eligible for c in sampled)


def test_a_forced_tool_call_is_never_selected_among(techniques: Policy) -> None:
    chosen = plan(techniques, request(needs=frozenset({"tools"})))
    assert (chosen.model, chosen.technique) == ("remote", "draft")  # local lacks tools
    sampled = [c for c in chosen.candidates if c.samples > 1]
    assert [(c.model, c.reason) for c in sampled] == [
        ("remote", "forced tool call"),
        ("remote", "forced tool call"),
    ]


def test_samples_need_only_the_drafts_context(techniques: Policy) -> None:
    # p = 3700: p + a = 3900 fits 4096; a rewrite's p + 2a + k + t = 4250 does not.
    chosen = plan(techniques, request(prompt_tokens=3700))
    table = by_key(chosen.candidates)
    assert table[("local", "refine", 1)].reason == "context window"
    assert table[("local", "best_of", 7)].eligible
    assert (chosen.model, chosen.technique, chosen.samples) == ("local", "best_of", 8)


def test_sizes_above_the_tasks_max_samples_are_not_candidates(techniques: Policy) -> None:
    # general lists best_of 4 (Q 9) but keeps max_samples at its default, 1.
    chosen = plan(techniques, request(task="general"))
    assert (chosen.model, chosen.technique) == ("local", "draft")
    assert all(c.samples == 1 for c in chosen.candidates)
    assert index_of(techniques).tasks["general"].by_model["local"].sampled == ()


def test_ties_go_to_draft_refine_best_of_vote_then_fewer() -> None:
    # Free model, equal quality everywhere: every score and cost is equal.
    free = policy_from(
        TECHNIQUES.replace("max_rounds: 1, max_samples: 8", "max_rounds: 2, max_samples: 8")
        .replace("input_usd_per_mtok: 1.0", "input_usd_per_mtok: 0.0")
        .replace("output_usd_per_mtok: 2.0", "output_usd_per_mtok: 0.0")
        .replace(
            "coding: {refine: [4.0, 4.0], best_of: {8: 6.0, 4: 5.0}, vote: {4: 5.0}}",
            "coding: {refine: [5.0, 5.0, 5.0], best_of: {4: 5.0, 2: 5.0}, vote: {2: 5.0}}",
        )
    )
    chosen = plan(free, request(pinned_model="local"))
    order = [(c.technique, c.rounds, c.samples) for c in chosen.candidates if c.eligible]
    assert order == [
        ("draft", 0, 1),
        ("refine", 1, 1),
        ("refine", 2, 1),
        ("best_of", 0, 2),
        ("best_of", 0, 4),
        ("vote", 0, 2),
    ]
    assert len({c.score for c in chosen.candidates if c.eligible}) == 1


def test_key_cap_on_samples(techniques: Policy) -> None:
    facts = RequestFacts(
        model="auto",
        headers={},
        perfics=None,
        last_user_text="",
        prompt_tokens=100,
        max_tokens=None,
    )
    scope = KeyScope(name="team", max_samples=4)
    capped = decide(techniques, facts, scope=scope)
    assert capped.declarations.max_samples == 4
    assert (capped.plan.model, capped.plan.technique) == ("remote", "best_of")
    with pytest.raises(KeyLimit) as caught:
        decide(techniques, replace(facts, headers={"x-perfics-max-samples": "8"}), scope=scope)
    assert caught.value.param == "max_samples"
    assert "allows at most 4 samples; the request declared 8" in caught.value.message
    within = decide(techniques, replace(facts, perfics={"max_samples": 2}), scope=scope)
    assert within.plan.technique == "draft"  # no size of 2 is listed


def test_the_alias_and_a_raw_completion(techniques: Policy) -> None:
    facts = RequestFacts(
        model="few",
        headers={},
        perfics=None,
        last_user_text="",
        prompt_tokens=100,
        max_tokens=None,
    )
    assert decide(techniques, facts).plan.samples == 4
    raw = decide(techniques, replace(facts, model="auto", refinable=False))
    assert (raw.plan.technique, raw.plan.samples, raw.plan.rounds) == ("draft", 1, 0)


def test_worst_case_counts_every_sample_at_the_longest_answer(techniques: Policy) -> None:
    facts = RequestFacts(
        model="auto",
        headers={},
        perfics=None,
        last_user_text="",
        prompt_tokens=100,
        max_tokens=None,
    )
    decision = decide(techniques, facts)
    # longest a = 4096 - 100 = 3996. local best_of 8, scored: in 8 (200 + 3996), out 8 * 3996;
    # then remote best_of 4, unscored: in 4 * 100, out 4 * 3996.
    local = (8 * (200 + 3996) * 1.0 + 8 * 3996 * 2.0) / 1e6
    remote = (4 * 100 * 1.0 + 4 * 3996 * 2.0) / 1e6
    assert decision.worst_case_usd(techniques) == pytest.approx(local + remote, rel=1e-12)


def test_the_policy_fields(techniques: Policy) -> None:
    assert techniques.selection.temperature == 0.7
    assert techniques.selection.checks is False
    assert techniques.selection.time_limit_s == 5
    local, remote = techniques.models
    assert local.defaults.given() == {"temperature": 0.2, "top_k": 40}
    assert remote.defaults.given() == {}
    assert local.quality_for("coding") == (4.0, 4.0)
    assert local.sampled_quality("coding") == (
        ("best_of", 4, 5.0),
        ("best_of", 8, 6.0),
        ("vote", 4, 5.0),
    )
    assert index_of(techniques).scorers == frozenset({"local"})
    assert techniques.tasks["general"].max_samples == 1


def test_a_model_whose_draft_is_over_budget_lists_its_samples_over_it() -> None:
    # remote at ten times the prices: its draft costs 0.005, over a budget of 0.001.
    dear = policy_from(
        TECHNIQUES.replace(
            "    input_usd_per_mtok: 1.0\n    output_usd_per_mtok: 2.0\n    quality:\n"
            "      coding: {refine: [4.0, 4.0], best_of: {4: 5.0}",
            "    input_usd_per_mtok: 10.0\n    output_usd_per_mtok: 20.0\n    quality:\n"
            "      coding: {refine: [4.0, 4.0], best_of: {4: 5.0}",
        )
    )
    chosen = plan(dear, request(budget_usd=0.001))
    assert (chosen.model, chosen.technique) == ("local", "draft")
    remote = {c.technique: c for c in chosen.candidates if c.model == "remote"}
    assert {t: c.reason for t, c in remote.items()} == {
        "draft": "over budget",
        "refine": "over budget",
        "best_of": "over budget",
        "vote": "over budget",
    }
    assert remote["best_of"].estimated_cost_usd == pytest.approx(0.02, rel=1e-12)  # 4p, 4a
    capped = plan(dear, request(budget_usd=0.001, max_samples=2))
    assert {c.reason for c in capped.candidates if c.model == "remote" and c.samples > 1} == {
        "samples above cap"
    }
