"""The dashboard's policy sections: the plan form (``plan_view``: a request that was never
sent, planned by ``routing.decision.decide`` on ``routing.hypothetical`` facts, exactly as
``perfics route --json``) and, per task, what the planner picks at a few prompt sizes and
budgets, every candidate at one size (``perfics route --explain``'s table), and quality
against cost with calibrated and guessed figures told apart; and how ``best_of`` and ``vote``
make their samples (the policy's ``selection``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

from proxy.ops.charts import ModelLine, Point, quality_cost_chart
from proxy.ops.html import table
from routing.cost import format_usd
from routing.decision import Decision, decide
from routing.errors import RoutingError
from routing.explain import SCORE_DECIMALS, plan_to_table
from routing.hypothetical import hypothetical_facts
from routing.planner import spending
from routing.policy import Policy

PROMPT_SIZES = (50, 500, 2000)
CHART_PROMPT_TOKENS = 500
FORM_FIELDS = (
    "task",
    "budget_usd",
    "max_rounds",
    "max_samples",
    "prompt",
    "prompt_tokens",
    "max_tokens",
)


@dataclass(frozen=True, slots=True)
class PlanView:
    form: Mapping[str, str]
    decision: Decision | None = None
    error: str | None = None


def plan_view(policy: Policy, form: Mapping[str, str]) -> PlanView:
    """Plan the request the form describes; a value the CLI would refuse is an error shown."""
    values = {name: form.get(name, "").strip() for name in FORM_FIELDS}
    try:
        facts = hypothetical_facts(
            task=values["task"] or None,
            budget_usd=values["budget_usd"] or None,
            max_rounds=values["max_rounds"] or None,
            max_samples=values["max_samples"] or None,
            prompt=values["prompt"] or None,
            prompt_tokens=_count(values["prompt_tokens"], "prompt_tokens", 0),
            max_tokens=_count(values["max_tokens"], "max_tokens", 1),
        )
        return PlanView(values, decision=decide(policy, facts))
    except RoutingError as exc:
        return PlanView(values, error=exc.message)
    except ValueError as exc:
        return PlanView(values, error=str(exc))


def _count(text: str, name: str, minimum: int) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}")
    return int(text)


def plan_section(policy: Policy, plan: PlanView) -> str:
    form = plan.form
    options = "".join(
        f'<option value="{escape(task)}"{" selected" if form.get("task") == task else ""}>'
        f"{escape(task)}</option>"
        for task in policy.tasks
    )

    def field(name: str, label: str, hint: str) -> str:
        return (
            f'<label>{label}<input name="{name}" value="{escape(form.get(name, ""))}" '
            f'placeholder="{hint}" inputmode="decimal"></label>'
        )

    parts = [
        '<section id="plan"><h2>Plan a request</h2>',
        "<p>What the planner would do, calling no model (the same decision as "
        "<code>perfics route --json</code>).</p>",
        '<form method="get" action="/dashboard/plan#plan" class="plan-form">',
        f'<label>task<select name="task"><option value="">classify the prompt</option>'
        f"{options}</select></label>",
        field("budget_usd", "budget USD", "none"),
        field("max_rounds", "rounds cap", "none"),
        field("max_samples", "samples cap", "none"),
        field("max_tokens", "max_tokens", "none"),
        field("prompt_tokens", "prompt tokens (without a prompt)", "0"),
        f'<label class="wide">prompt<textarea name="prompt" rows="3">'
        f"{escape(form.get('prompt', ''))}</textarea></label>",
        '<button type="submit">Plan</button></form>',
    ]
    if plan.error is not None:
        parts.append(f'<p class="bad" id="plan-error">No plan: {escape(plan.error)}</p>')
    elif plan.decision is not None:
        chosen, declared = plan.decision.plan, plan.decision.declarations
        parts.append(
            f'<p id="plan-summary">Task <b>{escape(chosen.task)}</b> '
            f"({escape(declared.task_source)}), {plan.decision.prompt_tokens} prompt tokens: "
            f"<b>{escape(chosen.model)}</b>, <b>{escape(chosen.technique)}</b>, "
            f"{escape(spending(chosen))}, score "
            f"{round(chosen.score, SCORE_DECIMALS)}, estimated "
            f"{format_usd(chosen.estimated_cost_usd)} USD.</p>"
        )
        rows = [
            (
                candidate.model,
                candidate.technique,
                str(candidate.rounds),
                str(candidate.samples),
                str(round(candidate.score, SCORE_DECIMALS)) if candidate.score is not None else "-",
                format_usd(candidate.estimated_cost_usd),
                "yes" if candidate.eligible else "no",
                candidate.reason or "",
            )
            for candidate in chosen.candidates
        ]
        parts.append(
            table(
                (
                    "model",
                    "technique",
                    "rounds",
                    "samples",
                    "score",
                    "estimated USD",
                    "eligible",
                    "reason",
                ),
                rows,
                "plan-result",
            )
        )
    parts.append("</section>")
    return "".join(parts)


def policy_section(policy: Policy, calibrated: frozenset[tuple[str, str]]) -> str:
    parts = [
        '<section id="policy"><h2>The loaded policy, task by task</h2>',
        "<p>What the planner picks for a request of each size under each budget (no declared "
        "round cap, default max_tokens). In the charts, filled points on solid lines are "
        "quality figures measured by <code>perfics calibrate</code>; hollow points on dashed "
        "lines are guesses written by hand.</p>",
        _selection(policy),
    ]
    for task in policy.tasks:
        parts.append(_task_block(policy, task, calibrated))
    parts.append("</section>")
    return "".join(parts)


def _task_block(policy: Policy, task: str, calibrated: frozenset[tuple[str, str]]) -> str:
    reference = _decide(policy, task, CHART_PROMPT_TOKENS, None)
    budgets: list[float | None] = [None]
    if isinstance(reference, Decision):
        costs = sorted(
            c.estimated_cost_usd for c in reference.plan.candidates if c.score is not None
        )
        if costs:
            budgets += sorted({_round_up(costs[0]), _round_up(math.sqrt(costs[0] * costs[-1]))})
    header = (
        "prompt tokens",
        *("no budget" if b is None else f"≤ {format_usd(b)} USD" for b in budgets),
    )
    rows = []
    for size in PROMPT_SIZES:
        cells = [str(size)]
        for budget in budgets:
            found = _decide(policy, task, size, budget)
            if isinstance(found, Decision):
                chosen = found.plan
                cells.append(
                    f"{chosen.model}, {spending(chosen)}, "
                    f"{format_usd(chosen.estimated_cost_usd)} USD"
                )
            else:
                cells.append(f"no plan: {found}")
        rows.append(tuple(cells))
    explain = (
        plan_to_table(reference.plan, policy, task_source="header")
        if isinstance(reference, Decision)
        else f"no plan: {reference}"
    )
    return (
        f'<article class="task" id="task-{escape(task)}"><h3>{escape(task)}</h3>'
        + table(header, rows, f"picks-{task}")
        + '<div class="chart-box">'
        + quality_cost_chart(
            f"{task}: quality against estimated cost at {CHART_PROMPT_TOKENS} prompt tokens",
            _chart_lines(policy, task, reference, calibrated),
        )
        + "</div>"
        + f"<details><summary>every candidate at {CHART_PROMPT_TOKENS} prompt tokens, no "
        f"budget (<code>perfics route --explain</code>)</summary><pre>{escape(explain)}</pre>"
        + "</details></article>"
    )


def _chart_lines(
    policy: Policy,
    task: str,
    reference: Decision | str,
    calibrated: frozenset[tuple[str, str]],
) -> list[ModelLine]:
    if not isinstance(reference, Decision):
        return []
    plan = reference.plan
    lines = []
    for spec in policy.models:
        quality = spec.quality_for(task)
        if quality is None:
            continue
        key = task if task in spec.quality else "default"
        points = tuple(
            Point(
                c.rounds,
                quality[c.rounds],
                c.estimated_cost_usd,
                picked=(c.model, c.rounds) == (plan.model, plan.rounds),
            )
            for c in sorted(plan.candidates, key=lambda c: c.rounds)
            if c.model == spec.id and c.samples == 1 and c.rounds < len(quality)
        )
        if points:
            lines.append(ModelLine(spec.id, (spec.id, key) in calibrated, points))
    return lines


def _selection(policy: Policy) -> str:
    """The ``selection`` settings, and which tasks may plan samples at all."""
    selection = policy.selection
    sampled = [name for name, task in policy.tasks.items() if task.max_samples > 1]
    tasks = ", ".join(escape(name) for name in sampled) if sampled else "none (max_samples 1)"
    checks = "run" if selection.checks else "never run (selection.checks: false)"
    return (
        f'<p id="selection">Samples to select from (best_of, vote): tasks {tasks}; drawn at '
        f"temperature {selection.temperature:g}; code examples in prompts {checks}, "
        f"{selection.time_limit_s:g} s at most per request.</p>"
    )


def _decide(policy: Policy, task: str, prompt_tokens: int, budget: float | None) -> Decision | str:
    facts = hypothetical_facts(
        task=task,
        budget_usd=format_usd(budget) if budget is not None else None,
        prompt_tokens=prompt_tokens,
    )
    try:
        return decide(policy, facts)
    except RoutingError as exc:
        return exc.message


def _round_up(amount: float) -> float:
    """``amount`` rounded up to two significant digits."""
    if amount <= 0:
        return amount
    scale = 10.0 ** (math.floor(math.log10(amount)) - 1)
    return float(math.ceil(amount / scale - 1e-9) * scale)
