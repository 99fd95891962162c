"""Policies written before selection techniques load unchanged and plan exactly as before.

``plans_main/`` holds every policy under ``policies/``, ``tests/policies/`` and
``tests/calibrate/policies/`` as they were at the commit ``plans.json`` names, and what that
commit's planner decided for every task of each over a grid of requests (``plan_snapshot``):
the winner (model, rounds, score, cost, tokens) and a digest of the fallback order and every
candidate. Scores and costs must match to the last bit.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from routing.errors import RoutingError
from routing.planner import plan
from routing.policy_loader import parse_policy

from .plan_snapshot import SNAPSHOT, requests, snapshot_name, table

BEFORE: dict[str, Any] = json.loads((SNAPSHOT / "plans.json").read_text(encoding="utf-8"))


def test_the_snapshot_covers_the_policies_and_a_grid_of_requests() -> None:
    policies = BEFORE["policies"]
    assert "policies/default.yaml" in policies
    assert len(policies) >= 10
    cases = [case for tasks in policies.values() for found in tasks.values() for case in found]
    assert len(cases) > 1000
    planned = [case for case in cases if len(case) == 3]
    assert {case[1][1] for case in planned} == {0, 1, 2}  # draft and refinement both won
    errors = {case[1].split(":")[0] for case in cases if len(case) == 2}
    assert {"BudgetExceeded", "ContextLengthExceeded", "CapabilityMissing"} <= errors


@pytest.mark.parametrize("name", sorted(BEFORE["policies"]))
def test_a_policy_plans_as_before(name: str) -> None:
    text = (SNAPSHOT / snapshot_name(name)).read_text(encoding="utf-8")
    now = table(text, name)
    before = BEFORE["policies"][name]
    assert list(now) == list(before)
    for task, cases in before.items():
        for expected, found in zip(cases, now[task], strict=True):
            if len(expected) == 2:  # a refusal: the same error, whatever its wording now
                expected, found = _error_kind(expected), _error_kind(found)
            assert found == expected, f"{name} task {task}, request {expected[0]}"


def _error_kind(case: list[Any]) -> list[Any]:
    """A refused case with its error's class alone (messages are reworded, decisions not)."""
    return [case[0], str(case[1]).split(":")[0]] if len(case) == 2 else case


@pytest.mark.parametrize("name", sorted(BEFORE["policies"]))
def test_a_policy_without_techniques_plans_no_samples(name: str) -> None:
    policy = parse_policy((SNAPSHOT / snapshot_name(name)).read_text(encoding="utf-8"), name)
    for task in policy.tasks:
        for request in requests(policy, task):
            try:
                chosen = plan(policy, request)
            except RoutingError:  # the table above compares the errors
                continue
            assert chosen.samples == 1
            assert chosen.technique == ("refine" if chosen.rounds else "draft")
            assert chosen.tokens() == (
                chosen.estimate.input_tokens(chosen.rounds),
                chosen.estimate.output_tokens(chosen.rounds),
            )
            assert all(c.samples == 1 for c in chosen.candidates)
