"""What a planner decides for every task of a set of policies, over a grid of requests: the table
``test_plans_unchanged.py`` compares against the one main's planner produced before selection
techniques existed (``plans_main/``). Only the planner's API of that time is used here, so this
module runs against either planner.

Regenerate the snapshot from another checkout's planner (run outside any checkout, so that
``routing`` comes from ``MAIN``; this module from ``HERE``)::

    git -C HERE archive COMMIT routing | tar -x -C MAIN
    cd "$(mktemp -d)" && PYTHONPATH=MAIN:HERE HERE/.venv/bin/python \\
        -m tests.routing.plan_snapshot HERE COMMIT

It copies the policies under ``policies/``, ``tests/policies/`` and
``tests/calibrate/policies/`` of ``HERE`` into ``plans_main/`` (so later edits to those files do
not move the snapshot) and writes ``plans_main/plans.json``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from routing.errors import RoutingError
from routing.planner import Plan, PlanRequest, plan
from routing.policy import Policy
from routing.policy_index import index_of
from routing.policy_loader import parse_policy

SNAPSHOT = Path(__file__).parent / "plans_main"
SOURCES = ("policies", "tests/policies", "tests/calibrate/policies")
PROMPT_TOKENS = (0, 900, 6000)
BUDGETS = (None, 1e-6, 3e-5, 1e-3)
CAPS = (None, 0, 1)


def requests(policy: Policy, task: str) -> list[PlanRequest]:
    """The grid for one task: prompt sizes x budgets x round caps, then a short ``max_tokens``,
    three choices, each model pinned, forced tools and tools the model may decline; then the
    edges: prompts that just fit, or just miss, each model's context for a draft and for a
    round, and budgets exactly at, and just below, the costs of a 900-token prompt's
    candidates."""
    grid = [
        PlanRequest(task=task, prompt_tokens=p, budget_usd=b, max_rounds=c)
        for p, b, c in itertools.product(PROMPT_TOKENS, BUDGETS, CAPS)
    ]
    index = index_of(policy)
    a = index.tasks[task].answer_tokens
    for spec in policy.models:
        draft = spec.context_window - a
        round_ = spec.context_window - 2 * a - index.critique_tokens - index.template_tokens
        for p in (draft, draft + 1, round_, round_ + 1):
            if p >= 0:
                grid.append(PlanRequest(task=task, prompt_tokens=p))
    try:
        unbounded = plan(policy, PlanRequest(task=task, prompt_tokens=900))
        costs = sorted({c.estimated_cost_usd for c in unbounded.candidates})
    except RoutingError:
        costs = []
    for cost in costs[:8]:
        grid.append(PlanRequest(task=task, prompt_tokens=900, budget_usd=cost))
        grid.append(PlanRequest(task=task, prompt_tokens=900, budget_usd=cost * (1 - 1e-9)))
    for p in PROMPT_TOKENS:
        grid.append(PlanRequest(task=task, prompt_tokens=p, max_tokens=32))
        grid.append(PlanRequest(task=task, prompt_tokens=p, choices=3, budget_usd=1e-3))
        grid.append(
            PlanRequest(task=task, prompt_tokens=p, needs=frozenset({"tools"}), tool_tokens=200)
        )
        grid.append(PlanRequest(task=task, prompt_tokens=p, optional_tools=True, tool_tokens=200))
        grid.extend(
            PlanRequest(task=task, prompt_tokens=p, pinned_model=spec.id) for spec in policy.models
        )
    return grid


def outcome(policy: Policy, request: PlanRequest) -> list[Any]:
    """``[request, winner, attempts and candidates digest]``, or ``[request, error]``."""
    described = [
        request.prompt_tokens,
        request.max_tokens,
        request.budget_usd,
        request.max_rounds,
        request.choices,
        request.pinned_model,
        sorted(request.needs),
        request.optional_tools,
    ]
    try:
        chosen = plan(policy, request)
    except RoutingError as exc:
        return [described, f"{type(exc).__name__}: {exc.message}"]
    return [described, winner(chosen), digest(chosen)]


def winner(chosen: Plan) -> list[Any]:
    """The plan's model, rounds, score, cost and ``(input, output)`` tokens."""
    tokens = [
        chosen.estimate.input_tokens(chosen.rounds),
        chosen.estimate.output_tokens(chosen.rounds),
    ]
    return [chosen.model, chosen.rounds, chosen.score, chosen.estimated_cost_usd, tokens]


def digest(chosen: Plan) -> str:
    """SHA-256 (16 hex digits) of the fallback order and every candidate, best first, as
    they were before techniques: (model, rounds, score, cost, eligible, reason, tools)."""
    rows = (
        [list(c)[:7] for c in chosen.attempts()] + [None] + [list(c)[:7] for c in chosen.candidates]
    )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def table(policy_text: str, name: str) -> dict[str, list[list[Any]]]:
    """Every task's outcomes under the policy ``policy_text``."""
    policy = parse_policy(policy_text, name)
    return {task: [outcome(policy, r) for r in requests(policy, task)] for task in policy.tasks}


def snapshot_name(relative: str) -> str:
    return relative.replace("/", "__")


def main(root: str, commit: str) -> None:
    import routing

    SNAPSHOT.mkdir(exist_ok=True)
    sys.stderr.write(f"planning with {Path(routing.__file__).parent}\n")
    plans: dict[str, Any] = {"commit": commit}
    policies: dict[str, Any] = {}
    for source in SOURCES:
        for path in sorted((Path(root) / source).rglob("*.yaml")):
            relative = str(path.relative_to(root))
            text = path.read_text(encoding="utf-8")
            (SNAPSHOT / snapshot_name(relative)).write_text(text, encoding="utf-8")
            policies[relative] = table(text, relative)
    plans["policies"] = policies
    (SNAPSHOT / "plans.json").write_text(one_case_a_line(plans), encoding="utf-8")


def one_case_a_line(plans: dict[str, Any]) -> str:
    """``plans`` as JSON with each case on a line of its own, so a diff names the case."""
    lines = ["{", f'"commit": {json.dumps(plans["commit"])},', '"policies": {']
    for p_index, (name, tasks) in enumerate(plans["policies"].items()):
        lines.append(f"{json.dumps(name)}: {{")
        for t_index, (task, cases) in enumerate(tasks.items()):
            lines.append(f"{json.dumps(task)}: [")
            lines.extend(
                json.dumps(case) + ("," if i < len(cases) - 1 else "")
                for i, case in enumerate(cases)
            )
            lines.append("]" + ("," if t_index < len(tasks) - 1 else ""))
        lines.append("}" + ("," if p_index < len(plans["policies"]) - 1 else ""))
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
