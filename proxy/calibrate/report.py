"""Charts and a Markdown table of a policy's quality figures against their cost.

For each task and each model with a quality list for it (its own, or ``default``), every round
count r gives one point: the judged quality Q_r and the estimated cost C_r of a typical
request (``prompt_tokens`` in, the task's ``answer_tokens`` out, plus r rounds), computed with
``routing.estimate.TokenEstimate`` and the model's prices exactly as the planner does. The plan
PeRFICS makes for that request (``routing.planner.plan``, no budget, every backend ready) is
marked. Points above the task's ``max_rounds`` are drawn hollow: the planner never picks them.

With a calibration's results file (``perfics calibrate --results``), each measured point
carries its 95 % interval (drawn as an error bar) and each round count its paired gain over
the draft, and the report says in words which gains are distinguishable from zero.

Files written to the output directory:

    quality_vs_cost.png   one panel per task
    refinement_gain.png   Q_R - Q_0 per task and model (R = the last listed round count)
    report.md             the same numbers as tables
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.calibrate.scores import gain_text
from routing.cost import cost_usd, format_usd
from routing.errors import RoutingError
from routing.estimate import TokenEstimate
from routing.planner import PlanRequest, plan
from routing.policy_index import index_of

if TYPE_CHECKING:
    from routing.policy import Policy

    from .stats import PairedDifference


@dataclass(frozen=True, slots=True)
class Measured:
    """A calibrated figure's 95 % interval, and its paired gain over the draft (r >= 1)."""

    n: int
    low: float
    high: float
    gain: PairedDifference | None


Intervals = Mapping[tuple[str, str, int], Measured]
"""``(task, model, rounds)`` -> its measurement, from a calibration results file."""


@dataclass(frozen=True, slots=True)
class Point:
    task: str
    model: str
    rounds: int
    quality: float
    cost_usd: float
    plannable: bool
    score: float | None
    source: str  # the quality key: the task, or "default"
    calibrated: bool  # the list carries a "# calibrated" comment in the policy file
    measured: Measured | None = None


@dataclass(frozen=True, slots=True)
class TaskView:
    task: str
    points: tuple[Point, ...]
    planned: tuple[str, int] | None
    plan_note: str


def task_views(
    policy: Policy,
    prompt_tokens: int,
    calibrated: frozenset[tuple[str, str]] = frozenset(),
    intervals: Intervals | None = None,
) -> list[TaskView]:
    """Every task's points and plan for a request of ``prompt_tokens`` tokens; ``calibrated``
    names the ``(model, quality key)`` lists measured by ``perfics calibrate``, ``intervals``
    their measurements when a results file is given."""
    views: list[TaskView] = []
    for name, task in policy.tasks.items():
        estimate = TokenEstimate(
            prompt_tokens,
            task.answer_tokens,
            index_of(policy).critique_tokens,
            index_of(policy).template_tokens,
        )
        scores: dict[tuple[str, int], float | None] = {}
        planned: tuple[str, int] | None = None
        try:
            chosen = plan(policy, PlanRequest(task=name, prompt_tokens=prompt_tokens))
        except RoutingError as exc:
            note = f"no plan: {exc.message}"
        else:
            planned = (chosen.model, chosen.rounds)
            rounds = "round" if chosen.rounds == 1 else "rounds"
            note = f"plan: {chosen.model}, {chosen.rounds} {rounds}"
            scores = {(c.model, c.rounds): c.score for c in chosen.candidates}
        points = []
        for spec in policy.models:
            quality = spec.quality_for(name)
            if quality is None:
                continue
            prices = spec.prices()
            source = name if name in spec.quality else "default"
            for r, q in enumerate(quality):
                cost = cost_usd(prices, estimate.input_tokens(r), estimate.output_tokens(r))
                points.append(
                    Point(
                        name,
                        spec.id,
                        r,
                        q,
                        cost,
                        r <= task.max_rounds,
                        scores.get((spec.id, r)),
                        source,
                        (spec.id, source) in calibrated,
                        (intervals or {}).get((name, spec.id, r)),
                    )
                )
        views.append(TaskView(name, tuple(points), planned, note))
    return views


def write_report(
    policy: Policy,
    out: Path,
    *,
    prompt_tokens: int = 100,
    calibrated: frozenset[tuple[str, str]] = frozenset(),
    intervals: Intervals | None = None,
) -> list[Path]:
    """Write the two charts and ``report.md`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    views = task_views(policy, prompt_tokens, calibrated, intervals)
    paths = [
        _quality_vs_cost(views, out / "quality_vs_cost.png", prompt_tokens),
        _gain_chart(views, out / "refinement_gain.png"),
    ]
    report = out / "report.md"
    report.write_text(markdown(views, prompt_tokens), encoding="utf-8")
    return [*paths, report]


def gains(view: TaskView) -> dict[str, tuple[int, float, tuple[float, float] | None]]:
    """``{model: (R, Q_R - Q_0, its 95 % interval or None)}`` for each model listed for the
    task; measured gains are the paired difference on the same questions."""
    by_model: dict[str, list[Point]] = {}
    for point in view.points:
        by_model.setdefault(point.model, []).append(point)
    found: dict[str, tuple[int, float, tuple[float, float] | None]] = {}
    for model, pts in by_model.items():
        last = pts[-1]
        paired = last.measured.gain if last.measured else None
        if paired is not None:
            finite = math.isfinite(paired.low) and math.isfinite(paired.high)
            bounds = (paired.low, paired.high) if finite else None
            found[model] = (last.rounds, round(paired.mean, 2), bounds)
        else:
            found[model] = (last.rounds, round(last.quality - pts[0].quality, 2), None)
    return found


def markdown(views: list[TaskView], prompt_tokens: int) -> str:
    lines = [
        "# Quality, cost and refinement gain per task",
        "",
        f"A typical request: {prompt_tokens} prompt tokens, the task's `answer_tokens` out. "
        "Cost is the planner's estimate (USD per request); score is PeRFICS. "
        "`source` is the quality list used (`default` when the task has none of its own), "
        "*measured* whether `perfics calibrate` wrote it (otherwise it is the policy author's "
        "guess); rows marked `-` in *plannable* lie above the task's `max_rounds`.",
    ]
    for view in views:
        lines += ["", f"## {view.task}", "", view.plan_note, ""]
        lines.append(
            "| model | rounds | quality | 95% CI | n | gain vs r0 [95% CI] | cost USD | PeRFICS "
            "| plannable | source | measured |"
        )
        lines.append("|---|---:|---:|---|---:|---|---:|---:|:---:|---|:---:|")
        for p in view.points:
            chosen = " **(plan)**" if view.planned == (p.model, p.rounds) else ""
            score = "-" if p.score is None else f"{p.score:.3f}"
            m = p.measured
            interval = f"[{m.low:.2f}, {m.high:.2f}]" if m else "-"
            gain = gain_text(m.gain) if m and m.gain else "-"
            lines.append(
                f"| {p.model}{chosen} | {p.rounds} | {p.quality:.2f} | {interval} "
                f"| {m.n if m else '-'} | {gain} | {_usd(p.cost_usd)} "
                f"| {score} | {'yes' if p.plannable else '-'} | {p.source} "
                f"| {'yes' if p.calibrated else 'no'} |"
            )
    said = findings(views)
    if said:
        lines += ["", "## What the measurements show", "", *said]
    lines += ["", "## Refinement gain (Q_R - Q_0)", "", "| task | model | R | gain [95% CI] |"]
    lines.append("|---|---|---:|---:|")
    for view in views:
        for model, (top, difference, bounds) in gains(view).items():
            shown = f" [{bounds[0]:+.2f}, {bounds[1]:+.2f}]" if bounds else ""
            lines.append(f"| {view.task} | {model} | {top} | {difference:+.2f}{shown} |")
    return "\n".join(lines) + "\n"


def findings(views: list[TaskView]) -> list[str]:
    """One line per measured round count >= 1: its paired gain over the draft, in words."""
    lines = []
    for view in views:
        for p in view.points:
            gain = p.measured.gain if p.measured else None
            if gain is None:
                continue
            if gain.distinguishable:
                said = f"**{gain.verdict()} than the draft** (the interval excludes zero)"
            else:
                said = "not distinguishable from the draft (the interval includes zero)"
            lines.append(
                f"- {view.task}, {p.model}, {p.rounds} "
                f"{'round' if p.rounds == 1 else 'rounds'}: {gain_text(gain)} points, "
                f"{gain.better} questions better and {gain.worse} worse of {gain.n}: {said}."
            )
    return lines


def _usd(amount: float) -> str:
    """Three significant digits, as a plain decimal."""
    return format_usd(float(f"{amount:.3g}"))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _quality_vs_cost(views: list[TaskView], path: Path, prompt_tokens: int) -> Path:
    plt = _pyplot()
    columns = 2 if len(views) > 1 else 1
    rows = math.ceil(len(views) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.6 * rows), squeeze=False)
    models = list(dict.fromkeys(p.model for v in views for p in v.points))
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    for ax, view in zip(axes.flat, views, strict=False):
        for model in dict.fromkeys(p.model for p in view.points):
            pts = [p for p in view.points if p.model == model]
            xs, ys = [p.cost_usd for p in pts], [p.quality for p in pts]
            label = model if pts[0].calibrated else f"{model} (guessed quality)"
            ax.plot(xs, ys, "-o", color=colors[model], alpha=0.7, label=label)
            for p in pts:
                face = colors[model] if p.plannable else "white"
                ax.plot(p.cost_usd, p.quality, "o", color=colors[model], mfc=face, ms=7)
                if p.measured is not None:
                    # The measured interval as it is, even where the policy's figure lies
                    # outside it (a hand-edited list, or a gain written as Q0).
                    middle = (p.measured.low + p.measured.high) / 2
                    ax.errorbar(
                        p.cost_usd, middle, yerr=[[middle - p.measured.low],
                        [p.measured.high - middle]], fmt="none", color=colors[model],
                        capsize=3, lw=1,
                    )  # fmt: skip
                ax.annotate(
                    f"r{p.rounds}", (p.cost_usd, p.quality), textcoords="offset points",
                    xytext=(6, -10), fontsize=8, color=colors[model],
                )  # fmt: skip
        ax.set_xscale("log")
        ax.set_ylim(0, 10.5)
        _pad_log_axis(ax, [p.cost_usd for p in view.points])
        chosen = [p for p in view.points if view.planned == (p.model, p.rounds)]
        for p in chosen:
            ax.plot(p.cost_usd, p.quality, "*", color="black", ms=18, mfc="gold", zorder=5)
            low, high = ax.get_xlim()
            right_half = math.log(p.cost_usd) > (math.log(low) + math.log(high)) / 2
            ax.annotate(
                f"plan: {p.model}, r={p.rounds}", (p.cost_usd, p.quality),
                textcoords="offset points", xytext=(-10 if right_half else 10, 10),
                ha="right" if right_half else "left", fontsize=9, weight="bold",
            )  # fmt: skip
        ax.set_title(f"{view.task}" + ("" if chosen else f" ({view.plan_note})"))
        ax.set_xlabel(f"estimated cost per request, USD ({prompt_tokens}-token prompt)")
        ax.set_ylabel("quality (0-10; error bars: 95% interval)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for ax in list(axes.flat)[len(views) :]:
        ax.set_visible(False)
    fig.suptitle("Quality vs cost per task (filled: plannable; hollow: above max_rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pad_log_axis(ax: Any, costs: list[float]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [c for c in costs if c > 0]
    if positive:
        low, high = min(positive), max(positive)
        ax.set_xlim(low / 2, high * 2)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _usd(float(f"{x:.1g}"))))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _gain_chart(views: list[TaskView], path: Path) -> Path:
    plt = _pyplot()
    found = {v.task: {m: g for m, g in gains(v).items() if g[0] > 0} for v in views}
    models = list(dict.fromkeys(m for per_task in found.values() for m in per_task))
    width = 0.8 / max(len(models), 1)
    size = min(max(6.4, 1.1 * len(views) * max(len(models), 1)), 12.0)
    fig, ax = plt.subplots(figsize=(size, 4.4))
    values = [0.0]
    for i, model in enumerate(models):
        xs, heights, labels = [], [], []
        middles: list[float] = []
        halves: list[float] = []
        for t, view in enumerate(views):
            gain = found[view.task].get(model)
            if gain is not None:
                xs.append(t - 0.4 + width * (i + 0.5))
                heights.append(gain[1])
                labels.append(f"{gain[1]:+.2f}\nR={gain[0]}")
                low, high = gain[2] if gain[2] is not None else (gain[1], gain[1])
                middles.append((low + high) / 2)
                halves.append((high - low) / 2)
                values += [low, high]
        values += heights
        measured = any(p.calibrated for v in views for p in v.points if p.model == model)
        label = model if measured else f"{model} (guessed quality)"
        bars = ax.bar(xs, heights, width, label=label, color=plt.get_cmap("tab10")(i % 10))
        ax.errorbar(xs, middles, yerr=halves, fmt="none", color="black", capsize=3, lw=1)
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(views)), [v.task for v in views])
    ax.set_ylabel("Q_R - Q_0 (points; error bars: 95% interval)")
    ax.set_title("Refinement gain per task and model (R = last listed round count)")
    pad = max(0.25, (max(values) - min(values)) * 0.2)
    ax.set_ylim(min(values) - pad, max(values) + pad)
    if models:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
