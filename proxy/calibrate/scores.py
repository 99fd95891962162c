"""What a calibration measured: quality per task, model and round count, with its intervals.

A figure rests on the questions of its task whose answer was graded; a question whose answer
could not be produced (a backend error) or whose grade could not be parsed is a failure of that
figure, counted and listed, never silently left out. A task's quality list is proposed for a
model only when every round count 0..R has at least one graded answer.

Every cell keeps its grades by question, so a round count can be compared with the draft on
the same questions (``Calibration.gain``: a paired difference, ``proxy.calibrate.stats``).
``AblationRow`` compares the acceptance rules (``proxy.acceptance``) after one round, on the
same drafts, critiques and rewrites. ``TechniqueCell`` holds a selection technique's grades
the same way (``proxy.calibrate.techniques`` measures them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .stats import Interval, PairedDifference, mean_interval, paired_difference
from .throughput import Throughput


@dataclass(frozen=True, slots=True)
class Cell:
    """The grades of one task, model and round count: ``graded`` pairs question ids with
    scores (0-10); ``failures`` counts the questions that produced none."""

    task: str
    model: str
    rounds: int
    graded: tuple[tuple[str, float], ...]
    failures: int

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(score for _, score in self.graded)

    @property
    def n(self) -> int:
        return len(self.graded)

    @property
    def mean(self) -> float | None:
        return round(sum(self.scores) / self.n, 2) if self.graded else None

    @property
    def interval(self) -> Interval:
        return mean_interval(self.scores)


@dataclass(frozen=True, slots=True)
class Failure:
    """One answer or grade that produced no score. ``rounds`` is ``None`` for an answer
    failure, which fails every round count of that question."""

    stage: str  # answer | samples | grade
    model: str
    question_id: str
    rounds: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class AblationRow:
    """One acceptance rule on one task and model, after one round: the answers' grades,
    their paired difference with the drafts, how many of ``rewrites`` rewrites the rule kept,
    and the extra model calls the rule itself made (scoring, for ``likelier``)."""

    task: str
    model: str
    rule: str
    graded: tuple[tuple[str, float], ...]
    gain: PairedDifference | None
    rewrites: int
    kept: int
    extra_calls: int

    @property
    def interval(self) -> Interval:
        return mean_interval([score for _, score in self.graded])


@dataclass(frozen=True, slots=True)
class TechniqueCell:
    """One variant (or the ``any`` oracle, ``technique`` "any") on one task and model:
    grades by question, the rule that decided each, and the answers made per question."""

    task: str
    model: str
    technique: str
    k: int
    checks: bool
    graded: tuple[tuple[str, float], ...]
    decided: tuple[tuple[str, str], ...] = ()
    samples_made: tuple[int, ...] = ()

    @property
    def interval(self) -> Interval:
        return mean_interval([score for _, score in self.graded])

    @property
    def n(self) -> int:
        return len(self.graded)

    def rules(self) -> dict[str, int]:
        """How many questions each rule decided."""
        return dict(Counter(rule for _, rule in self.decided))

    @property
    def mean_samples(self) -> float:
        made = self.samples_made
        return sum(made) / len(made) if made else 0.0


@dataclass(frozen=True, slots=True)
class Calibration:
    judge: str | None
    rounds: int
    cells: tuple[Cell, ...]
    failures: tuple[Failure, ...]
    throughput: Mapping[str, Throughput] = field(default_factory=dict)
    model_calls: int = 0
    judge_calls: int = 0
    suites: tuple[str, ...] = ()
    task_suites: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ablation: tuple[AblationRow, ...] = ()
    checks: int = 0  # answers checked by a verifiable grader
    techniques: tuple[TechniqueCell, ...] = ()
    samples_made: int = 0
    selection_checks: bool = True  # the policy's selection.checks: the variants it plans
    latency: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def cell(self, task: str, model: str, rounds: int) -> Cell | None:
        for cell in self.cells:
            if (cell.task, cell.model, cell.rounds) == (task, model, rounds):
                return cell
        return None

    def gain(self, task: str, model: str, rounds: int) -> PairedDifference | None:
        """Quality after ``rounds`` rounds minus the draft's, on the questions graded both
        ways; None for ``rounds`` 0 or when no question was."""
        after, before = self.cell(task, model, rounds), self.cell(task, model, 0)
        if rounds == 0 or after is None or before is None:
            return None
        return pair(after.graded, before.graded)

    def technique_tables(self) -> dict[str, dict[str, dict[str, dict[int, TechniqueCell]]]]:
        """``{model: {task: {technique: {k: cell}}}}`` of the cells a policy plans with:
        ``best_of`` and ``vote`` under the policy's ``selection.checks``, with grades."""
        tables: dict[str, dict[str, dict[str, dict[int, TechniqueCell]]]] = {}
        for cell in self.techniques:
            planned = cell.technique in ("best_of", "vote") and cell.checks == self.selection_checks
            if planned and cell.graded:
                by_task = tables.setdefault(cell.model, {}).setdefault(cell.task, {})
                by_task.setdefault(cell.technique, {})[cell.k] = cell
        return tables

    def technique_gain(self, cell: TechniqueCell) -> PairedDifference | None:
        """A technique's grades minus the draft's, on the questions graded both ways."""
        draft = self.cell(cell.task, cell.model, 0)
        return None if draft is None else pair(cell.graded, draft.graded)

    def quality_lists(
        self, *, significant_only: bool = False
    ) -> dict[str, dict[str, tuple[list[float], list[int]]]]:
        """``{model: {task: ([Q0..QR], [n0..nR])}}`` for every complete task list. With
        ``significant_only``, a round count whose paired gain over the draft is not
        distinguishable from zero is written as Q0: the planner then pays for rounds only
        where the measurement shows they change the answer."""
        lists: dict[str, dict[str, tuple[list[float], list[int]]]] = {}
        for task, model in dict.fromkeys((c.task, c.model) for c in self.cells):
            column = [self.cell(task, model, r) for r in range(self.rounds + 1)]
            means = [c.mean if c is not None else None for c in column]
            if any(m is None for m in means):
                continue
            values = [m for m in means if m is not None]
            if significant_only:
                for r in range(1, len(values)):
                    gain = self.gain(task, model, r)
                    if gain is None or not gain.distinguishable:
                        values[r] = values[0]
            counts = [c.n for c in column if c is not None]
            lists.setdefault(model, {})[task] = (values, counts)
        return lists


def pair(
    after: Sequence[tuple[str, float]], before: Sequence[tuple[str, float]]
) -> PairedDifference | None:
    """The paired difference over the question ids present in both."""
    earlier = dict(before)
    common = [(score, earlier[qid]) for qid, score in after if qid in earlier]
    if not common:
        return None
    return paired_difference([a for a, _ in common], [b for _, b in common])


def summary_table(calibration: Calibration) -> str:
    """A fixed-width table: task, model, rounds, n, mean with its 95 % interval, failures, and
    for r >= 1 the paired difference with r = 0 and what it shows."""
    header = ("task", "model", "rounds", "n", "mean", "95% CI", "failures", "vs r0", "shows")
    rows = []
    for c in calibration.cells:
        gain = calibration.gain(c.task, c.model, c.rounds)
        rows.append(
            (
                c.task,
                c.model,
                str(c.rounds),
                str(c.n),
                _mean(c),
                _bounds(c.interval.low, c.interval.high) if c.graded else "-",
                str(c.failures),
                _gain(gain),
                gain.verdict() if gain is not None else "",
            )
        )
    return table(header, rows)


def ablation_table(calibration: Calibration) -> str:
    """The acceptance rules side by side after one round (see ``AblationRow``)."""
    header = ("task", "model", "rule", "n", "mean", "95% CI", "vs r0", "shows", "kept", "+calls")
    rows = []
    for row in calibration.ablation:
        interval = row.interval
        rows.append(
            (
                row.task,
                row.model,
                row.rule,
                str(interval.n),
                f"{interval.mean:.2f}" if interval.n else "-",
                _bounds(interval.low, interval.high) if interval.n else "-",
                _gain(row.gain),
                row.gain.verdict() if row.gain is not None else "",
                f"{row.kept}/{row.rewrites}",
                str(row.extra_calls),
            )
        )
    return table(header, rows)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _mean(cell: Cell) -> str:
    return "-" if cell.mean is None else f"{cell.mean:.2f}"


def _bounds(low: float, high: float) -> str:
    return f"[{low:.2f}, {high:.2f}]"


def _gain(gain: PairedDifference | None) -> str:
    return "" if gain is None else gain_text(gain)


def gain_text(gain: PairedDifference) -> str:
    """``+0.50 [-0.20, +1.20]``; a single pair has no interval (``+0.50 (n=1)``)."""
    if not (math.isfinite(gain.low) and math.isfinite(gain.high)):
        return f"{gain.mean:+.2f} (n={gain.n})"
    return f"{gain.mean:+.2f} [{gain.low:+.2f}, {gain.high:+.2f}]"


def build_cells(
    tasks: Sequence[tuple[str, str]],
    models: Sequence[str],
    rounds: int,
    scores: Mapping[tuple[str, str, int], float | None],
) -> tuple[Cell, ...]:
    """Cells for every task, model and round count. ``tasks`` pairs each question id with its
    task; ``scores[(model, question_id, r)]`` is the grade, ``None`` (or absent) a failure."""
    task_names = list(dict.fromkeys(task for _, task in tasks))
    cells: list[Cell] = []
    for task in task_names:
        ids = [qid for qid, t in tasks if t == task]
        for model in models:
            for r in range(rounds + 1):
                found = [(qid, scores.get((model, qid, r))) for qid in ids]
                graded = tuple((qid, s) for qid, s in found if s is not None)
                cells.append(Cell(task, model, r, graded, len(found) - len(graded)))
    return tuple(cells)
