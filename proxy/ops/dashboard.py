"""The dashboard at ``/dashboard``: one server-rendered HTML page, complete without JavaScript
(``static/dashboard.js`` only refreshes the live figures in place), loading nothing that
perfics does not serve itself.

Sections: the policy's reload status; live figures (``live_sections``, each a function of the
metric samples, so a section such as spend by key is one more entry); the plan form (a GET
form: ``/dashboard/plan?task=&budget_usd=&max_rounds=&prompt=...`` renders the page with every
candidate, planned by ``routing.decision.decide`` on facts from
``routing.hypothetical.hypothetical_facts``, exactly as ``perfics route --json``); and per
task, what the planner picks at a few prompt sizes and budgets, every candidate at one size
(``perfics route --explain``'s table), and quality against cost with calibrated and guessed
figures told apart (``routing.quality_provenance``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from proxy.ops.charts import ModelLine, Point, quality_cost_chart
from proxy.ops.live import RateSampler, Samples
from proxy.ops.metrics import Metrics, policy_hash
from routing.cost import format_usd
from routing.decision import Decision, decide
from routing.errors import RoutingError
from routing.explain import SCORE_DECIMALS, plan_to_table
from routing.hypothetical import hypothetical_facts
from routing.policy import Policy
from routing.quality_provenance import calibrated_quality

PROMPT_SIZES = (50, 500, 2000)
CHART_PROMPT_TOKENS = 500
STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
FORM_FIELDS = ("task", "budget_usd", "max_rounds", "prompt", "prompt_tokens", "max_tokens")


@dataclass(frozen=True, slots=True)
class Reload:
    at: float
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class PlanView:
    form: Mapping[str, str]
    decision: Decision | None = None
    error: str | None = None


class Dashboard:
    """What the page shows beyond the runtime: reloads, calibration marks, the rate sampler."""

    def __init__(self) -> None:
        self.reloads: deque[Reload] = deque(maxlen=10)
        self.calibrated: frozenset[tuple[str, str]] = frozenset()
        self.rate = RateSampler()

    def policy_loaded(self, source: str) -> None:
        try:
            self.calibrated = calibrated_quality(Path(source).read_text(encoding="utf-8"))
        except OSError:
            self.calibrated = frozenset()
        self.reloads.append(Reload(time.time(), True, source))

    def policy_failed(self, error: str) -> None:
        self.reloads.append(Reload(time.time(), False, error))

    def page(
        self,
        policy: Policy,
        source: str,
        ready: frozenset[str],
        metrics: Metrics | None,
        reload_error: str | None,
        plan: PlanView,
    ) -> str:
        body = [
            f"<header><h1>perfics</h1><p>policy <code>{escape(source)}</code>, "
            f"hash <code>{policy_hash(policy)}</code>; models ready: "
            f"{escape(', '.join(sorted(ready)) or 'none')}</p></header>",
            '<nav><a href="#live">live</a> <a href="#plan">plan a request</a> '
            '<a href="#policy">policy</a> <a href="#reloads">reloads</a></nav>',
            '<section id="live" data-refresh="/dashboard/live"><h2>Live</h2>',
            self.live(metrics),
            "</section>",
            _plan_section(policy, plan),
            _policy_section(policy, self.calibrated),
            self._reloads_section(reload_error),
        ]
        return _document("\n".join(body))

    def live(self, metrics: Metrics | None) -> str:
        """The live figures (the ``/dashboard/live`` fragment)."""
        if metrics is None:
            return "<p>Metrics are off (PERFICS_METRICS=off).</p>"
        samples = Samples.of(metrics.collect())
        return "\n".join(section(samples, self) for section in live_sections)

    def _reloads_section(self, reload_error: str | None) -> str:
        status = (
            f'<p class="bad">The last reload failed; the policy above is still served.</p>'
            f"<pre>{escape(reload_error)}</pre>"
            if reload_error
            else '<p class="good">The last reload succeeded.</p>'
        )
        rows = [
            (
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.at)) + " UTC",
                "loaded" if event.ok else "failed",
                event.detail.splitlines()[0] if event.detail else "",
            )
            for event in reversed(self.reloads)
        ]
        return (
            '<section id="reloads"><h2>Policy reloads</h2>'
            + status
            + _table(("when", "result", "file or first problem"), rows)
            + "</section>"
        )


def _requests_section(samples: Samples, dashboard: Dashboard) -> str:
    total = samples.total("perfics_requests_total")
    rate, window = dashboard.rate.rate(total)
    ok = samples.total("perfics_requests_total", status="200")
    by_status = samples.grouped("perfics_requests_total", "status")
    statuses = ", ".join(
        f"{status} × {count:.0f}" for (status,), count in sorted(by_status.items())
    )
    duration = "perfics_request_duration_seconds"
    cells = [
        ("requests", f"{total:.0f} ({ok:.0f} answered)"),
        ("request rate", f"{rate:.2f}/s ({window})"),
        ("in flight", f"{samples.total('perfics_requests_in_flight'):.0f}"),
        ("by status", statuses or "none yet"),
    ]
    cells += [
        (f"latency p{int(q * 100)}", _seconds(samples.quantile(duration, q)))
        for q in (0.5, 0.9, 0.99)
    ]
    cells += [
        (
            f"time to first token p{int(q * 100)}",
            _seconds(samples.quantile("perfics_time_to_first_token_seconds", q)),
        )
        for q in (0.5, 0.99)
    ]
    items = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in cells)
    return f'<dl class="figures">{items}</dl>'


def _rounds_section(samples: Samples, dashboard: Dashboard) -> str:
    planned_sum = samples.total("perfics_refinement_rounds_planned_sum")
    planned_n = samples.total("perfics_refinement_rounds_planned_count")
    done_sum = samples.total("perfics_refinement_rounds_sum")
    done_n = samples.total("perfics_refinement_rounds_count")
    stops = samples.grouped("perfics_refinement_stops_total", "reason")
    fallbacks = samples.grouped("perfics_fallbacks_total", "model")
    rejected = samples.total("perfics_queue_rejections_total")
    mean_planned = f"{planned_sum / planned_n:.2f}" if planned_n else "-"
    mean_done = f"{done_sum / done_n:.2f}" if done_n else "-"
    stop_text = ", ".join(f"{r} × {n:.0f}" for (r,), n in sorted(stops.items())) or "none yet"
    fallback_text = ", ".join(f"{m} × {n:.0f}" for (m,), n in sorted(fallbacks.items())) or "none"
    cells = [
        ("rounds planned (mean)", mean_planned),
        ("rounds run (mean per choice)", mean_done),
        ("stop reasons", stop_text),
        ("fallbacks (failed model)", fallback_text),
        ("queue full (429)", f"{rejected:.0f}"),
    ]
    items = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in cells)
    return f'<dl class="figures">{items}</dl>'


def _cost_section(samples: Samples, dashboard: Dashboard) -> str:
    keys = ("model", "task")
    requests = samples.grouped("perfics_requests_total", *keys, status="200")
    cost = samples.grouped("perfics_cost_usd_total", *keys)
    reference = samples.grouped("perfics_reference_cost_usd_total", *keys)
    rows = []
    for key in sorted(set(requests) | set(cost)):
        spent, ref = cost.get(key, 0.0), reference.get(key)
        saving = f"{format_usd(ref - spent)}" if ref is not None else "-"
        share = f"{(ref - spent) / ref:.0%}" if ref else "-"
        rows.append(
            (*key, f"{requests.get(key, 0):.0f}", format_usd(spent), _usd(ref), saving, share)
        )
    table = _table(
        ("model", "task", "answered", "cost USD", "reference USD", "saving USD", "saving"),
        rows,
        "cost-by-model",
    )
    calls = samples.grouped("perfics_calls_total", "call")
    call_cost = samples.grouped("perfics_call_cost_usd_total", "call")
    prompt = samples.grouped("perfics_call_prompt_tokens_total", "call")
    completion = samples.grouped("perfics_call_completion_tokens_total", "call")
    seconds = samples.grouped("perfics_call_duration_seconds_sum", "call")
    call_rows = [
        (
            call,
            f"{calls[(call,)]:.0f}",
            f"{prompt.get((call,), 0):.0f}",
            f"{completion.get((call,), 0):.0f}",
            format_usd(call_cost.get((call,), 0.0)),
            _seconds(seconds.get((call,), 0.0) / calls[(call,)] if calls[(call,)] else None),
        )
        for (call,) in sorted(calls, key=lambda k: _CALL_ORDER.get(k[0], 9))
    ]
    return (
        "<h3>Cost and saving by model and task</h3>"
        + table
        + "<h3>What refinement costs: internal calls by kind</h3>"
        + _table(
            ("call", "calls", "prompt tokens", "completion tokens", "cost USD", "mean time"),
            call_rows,
            "calls-by-kind",
        )
    )


_CALL_ORDER = {"draft": 0, "critique": 1, "rewrite": 2, "review": 3}

live_sections: list[Callable[[Samples, Dashboard], str]] = [
    _requests_section,
    _rounds_section,
    _cost_section,
]
"""The live figures, in order: each renders HTML from the samples (a new table is one entry)."""


def plan_view(policy: Policy, form: Mapping[str, str]) -> PlanView:
    """Plan the request the form describes; a value the CLI would refuse is an error shown."""
    values = {name: form.get(name, "").strip() for name in FORM_FIELDS}
    try:
        facts = hypothetical_facts(
            task=values["task"] or None,
            budget_usd=values["budget_usd"] or None,
            max_rounds=values["max_rounds"] or None,
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


def _plan_section(policy: Policy, plan: PlanView) -> str:
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
            f"<b>{escape(chosen.model)}</b>, {chosen.rounds} rounds, score "
            f"{round(chosen.score, SCORE_DECIMALS)}, estimated "
            f"{format_usd(chosen.estimated_cost_usd)} USD.</p>"
        )
        rows = [
            (
                candidate.model,
                str(candidate.rounds),
                str(round(candidate.score, SCORE_DECIMALS)) if candidate.score is not None else "-",
                format_usd(candidate.estimated_cost_usd),
                "yes" if candidate.eligible else "no",
                candidate.reason or "",
            )
            for candidate in chosen.candidates
        ]
        parts.append(
            _table(
                ("model", "rounds", "score", "estimated USD", "eligible", "reason"),
                rows,
                "plan-result",
            )
        )
    parts.append("</section>")
    return "".join(parts)


def _policy_section(policy: Policy, calibrated: frozenset[tuple[str, str]]) -> str:
    parts = [
        '<section id="policy"><h2>The loaded policy, task by task</h2>',
        "<p>What the planner picks for a request of each size under each budget (no declared "
        "round cap, default max_tokens). In the charts, filled points on solid lines are "
        "quality figures measured by <code>perfics calibrate</code>; hollow points on dashed "
        "lines are guesses written by hand.</p>",
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
                    f"{chosen.model}, {chosen.rounds} rounds, "
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
        + _table(header, rows, f"picks-{task}")
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
            if c.model == spec.id and c.rounds < len(quality)
        )
        if points:
            lines.append(ModelLine(spec.id, (spec.id, key) in calibrated, points))
    return lines


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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "") -> str:
    ident = f' id="{escape(table_id)}"' if table_id else ""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(header)}" class="empty">none yet</td></tr>'
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _usd(value: float | None) -> str:
    return format_usd(value) if value is not None else "-"


def _document(body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>perfics dashboard</title>"
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/dashboard/static/dashboard.css"></head><body>'
        f"{body}"
        '<script src="/dashboard/static/dashboard.js" defer></script></body></html>'
    )


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file of ``static/`` and its content type, or None for any other name."""
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or path.parent != STATIC or not path.is_file():
        return None
    return path.read_bytes(), kind
