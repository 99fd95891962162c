"""Plans rendered for people and programs: ``perfics route --json`` and ``--explain``.

JSON numbers: ``score`` is rounded to 6 decimals (as the ``x-perfics-score`` header);
``estimated_cost_usd`` is the ``format_usd`` string read back as a number (at most 12
decimals), so JSON and headers agree. A candidate without quality for the task has
``score: null``.
"""

from __future__ import annotations

from typing import Any

from routing.cost import format_usd
from routing.declarations import Declarations
from routing.planner import Candidate, Plan
from routing.policy import Policy

SCORE_DECIMALS = 6


def plan_to_json(plan: Plan, declarations_or_task_source: Declarations | str) -> dict[str, Any]:
    """``{"model", "rounds", "score", "estimated_cost_usd", "task", "task_source",
    "candidates": [{"model", "rounds", "score", "estimated_cost_usd", "eligible", "reason"}]}``
    with candidates best first."""
    source = declarations_or_task_source
    task_source = source if isinstance(source, str) else source.task_source
    return {
        "model": plan.model,
        "rounds": plan.rounds,
        "score": round(plan.score, SCORE_DECIMALS),
        "estimated_cost_usd": usd_number(plan.estimated_cost_usd),
        "task": plan.task,
        "task_source": task_source,
        "candidates": [_candidate_json(candidate) for candidate in plan.candidates],
    }


def _candidate_json(candidate: Candidate) -> dict[str, Any]:
    return {
        "model": candidate.model,
        "rounds": candidate.rounds,
        "score": round(candidate.score, SCORE_DECIMALS) if candidate.score is not None else None,
        "estimated_cost_usd": usd_number(candidate.estimated_cost_usd),
        "eligible": candidate.eligible,
        "reason": candidate.reason,
    }


def usd_number(amount: float) -> float:
    """``amount`` rounded as ``format_usd`` rounds it (at most 12 decimals)."""
    return float(format_usd(amount))


def plan_to_table(
    plan: Plan,
    policy: Policy,
    *,
    task_source: str,
    budget_usd: float | None = None,
    max_rounds: int | None = None,
) -> str:
    """A header with the task, the token estimate, the budget and the round cap, then one
    aligned row per candidate (best first, the winner marked ``*``): model, rounds, Q_r,
    estimated cost, score, and ``eligible`` or the reason it is not."""
    estimate = plan.estimate
    budget = f"{format_usd(budget_usd)} USD" if budget_usd is not None else "none"
    cap = str(max_rounds) if max_rounds is not None else "none"
    header = (
        f"task {plan.task} ({task_source}); tokens p={estimate.p} a={estimate.a} "
        f"k={estimate.k} t={estimate.t}; budget {budget}; round cap {cap}"
    )
    rows = [("", "model", "rounds", "Q_r", "cost_usd", "score", "status")]
    winner = (plan.model, plan.rounds)
    for candidate in plan.candidates:
        quality = policy.model(candidate.model).quality_for(plan.task)
        q_r = (
            f"{quality[candidate.rounds]:g}"
            if quality is not None and candidate.rounds < len(quality)
            else "-"
        )
        rows.append(
            (
                "*" if (candidate.model, candidate.rounds) == winner else "",
                candidate.model,
                str(candidate.rounds),
                q_r,
                format_usd(candidate.estimated_cost_usd),
                f"{candidate.score:.4f}" if candidate.score is not None else "-",
                "eligible" if candidate.eligible else str(candidate.reason),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    numeric = {2, 3, 4, 5}
    lines = [header]
    for row in rows:
        cells = [
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
