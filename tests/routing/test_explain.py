"""``perfics route`` renderings: the JSON object and the --explain table."""

from __future__ import annotations

import json

from routing.declarations import resolve_declarations
from routing.explain import plan_to_json, plan_to_table
from routing.planner import PlanRequest, plan
from routing.policy import Policy


def test_json_has_exactly_the_design_keys(two_models: Policy) -> None:
    chosen = plan(two_models, PlanRequest(task="short", prompt_tokens=100))
    body = plan_to_json(chosen, "header")
    assert list(body) == [
        "model",
        "rounds",
        "technique",
        "samples",
        "score",
        "estimated_cost_usd",
        "task",
        "task_source",
        "candidates",
    ]
    assert body["model"] == "small"
    assert body["task_source"] == "header"
    assert body["estimated_cost_usd"] == 0.00002  # (100 * 0.1 + 50 * 0.2) / 1e6
    assert body["score"] == round(chosen.score, 6)
    for candidate in body["candidates"]:
        assert list(candidate) == [
            "model",
            "rounds",
            "technique",
            "samples",
            "score",
            "estimated_cost_usd",
            "eligible",
            "reason",
        ]
    assert body["candidates"][-1] == {
        "model": "big",
        "rounds": 0,
        "technique": "draft",
        "samples": 1,
        "score": None,
        "estimated_cost_usd": 0.0002,  # (100 * 1.0 + 50 * 2.0) / 1e6
        "eligible": False,
        "reason": "no quality for task",
    }
    json.dumps(body, allow_nan=False)


def test_json_takes_declarations(two_models: Policy) -> None:
    declared = resolve_declarations(
        two_models, model="gpt-4o", headers={}, body=None, last_user_text=""
    )
    chosen = plan(two_models, PlanRequest(task=declared.task, prompt_tokens=10))
    assert plan_to_json(chosen, declared)["task_source"] == "alias"


def test_table_marks_the_winner_and_states_the_estimate(two_models: Policy) -> None:
    chosen = plan(two_models, PlanRequest(task="general", prompt_tokens=100, budget_usd=0.002))
    table = plan_to_table(chosen, two_models, task_source="default", budget_usd=0.002)
    lines = table.splitlines()
    assert lines[0] == (
        "task general (default); tokens p=100 a=200 k=100 t=50; budget 0.002 USD; round cap "
        "none; sample cap none"
    )
    assert lines[1].split() == [
        "model",
        "technique",
        "rounds",
        "samples",
        "Q",
        "cost_usd",
        "score",
        "status",
    ]
    assert lines[2].split() == ["*", "big", "refine", "1", "1", "7", "0.0019", "0.7694", "eligible"]
    assert len(lines) == 2 + len(chosen.candidates)
    assert lines[-1].split()[-2:] == ["over", "budget"]
    assert len({line.index("big") if "big" in line else None for line in lines[2:]} - {None}) == 1
