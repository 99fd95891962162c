"""Plans rendered for people and programs: ``perfics route --json`` and ``--explain``.

JSON numbers: ``score`` is rounded to 6 decimals (as the ``x-perfics-score`` header);
``estimated_cost_usd`` is the ``format_usd`` string read back as a number (at most 12
decimals), so JSON and headers agree. A candidate without quality for the task has
``score: null``. ``technique`` is ``draft``, ``refine``, ``best_of`` or ``vote``; ``samples``
is 1 unless ``best_of`` or ``vote``, whose ``rounds`` are 0.
"""

from __future__ import annotations

from typing import Any

from routing.cost import format_usd
from routing.declarations import Declarations
from routing.planner import Candidate, Plan
from routing.policy import ModelSpec, Policy
from routing.techniques import SELECTION_TECHNIQUES

SCORE_DECIMALS = 6


def plan_to_json(plan: Plan, declarations_or_task_source: Declarations | str) -> dict[str, Any]:
    """``{"model", "rounds", "technique", "samples", "score", "estimated_cost_usd", "task",
    "task_source", "candidates": [{"model", "rounds", "technique", "samples", "score",
    "estimated_cost_usd", "eligible", "reason"}]}`` with candidates best first."""
    source = declarations_or_task_source
    task_source = source if isinstance(source, str) else source.task_source
    return {
        "model": plan.model,
        "rounds": plan.rounds,
        "technique": plan.technique,
        "samples": plan.samples,
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
        "technique": candidate.technique,
        "samples": candidate.samples,
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
    max_samples: int | None = None,
) -> str:
    """A header with the task, the token estimate, the budget and the round and sample caps,
    then one aligned row per candidate (best first, the winner marked ``*``): model,
    technique, rounds, samples, its quality (Q_r, or Q of the technique at k samples),
    estimated cost, score, and ``eligible`` or the reason it is not."""
    estimate = plan.estimate
    budget = f"{format_usd(budget_usd)} USD" if budget_usd is not None else "none"
    cap = str(max_rounds) if max_rounds is not None else "none"
    sample_cap = str(max_samples) if max_samples is not None else "none"
    header = (
        f"task {plan.task} ({task_source}); tokens p={estimate.p} a={estimate.a} "
        f"k={estimate.k} t={estimate.t}; budget {budget}; round cap {cap}; "
        f"sample cap {sample_cap}"
    )
    rows = [("", "model", "technique", "rounds", "samples", "Q", "cost_usd", "score", "status")]
    winner = (plan.model, plan.technique, plan.rounds, plan.samples)
    for candidate in plan.candidates:
        chosen = (candidate.model, candidate.technique, candidate.rounds, candidate.samples)
        rows.append(
            (
                "*" if chosen == winner else "",
                candidate.model,
                candidate.technique,
                str(candidate.rounds),
                str(candidate.samples),
                _quality(policy.model(candidate.model), plan.task, candidate),
                format_usd(candidate.estimated_cost_usd),
                f"{candidate.score:.4f}" if candidate.score is not None else "-",
                "eligible" if candidate.eligible else str(candidate.reason),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    numeric = {3, 4, 5, 6, 7}
    lines = [header]
    for row in rows:
        cells = [
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _quality(spec: ModelSpec, task: str, candidate: Candidate) -> str:
    """The candidate's Q as the policy lists it, or ``-`` (no quality for the task)."""
    if candidate.technique in SELECTION_TECHNIQUES:
        listed = {(t, k): q for t, k, q in spec.sampled_quality(task)}
        found = listed.get((candidate.technique, candidate.samples))
        return f"{found:g}" if found is not None else "-"
    quality = spec.quality_for(task)
    if quality is None or candidate.rounds >= len(quality):
        return "-"
    return f"{quality[candidate.rounds]:g}"
