"""What a calibration measured: mean judged quality per task, model and round count.

A figure rests on the questions of its task whose answer was graded; a question whose answer
could not be produced (a backend error) or whose grade could not be parsed is a failure of that
figure, counted and listed, never silently left out. A task's quality list is proposed for a
model only when every round count 0..R has at least one graded answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .throughput import Throughput


@dataclass(frozen=True, slots=True)
class Cell:
    task: str
    model: str
    rounds: int
    scores: tuple[float, ...]
    failures: int

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float | None:
        return round(sum(self.scores) / len(self.scores), 2) if self.scores else None


@dataclass(frozen=True, slots=True)
class Failure:
    """One answer or grade that produced no score. ``rounds`` is ``None`` for an answer
    failure, which fails every round count of that question."""

    stage: str  # answer | grade
    model: str
    question_id: str
    rounds: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Calibration:
    judge: str
    rounds: int
    cells: tuple[Cell, ...]
    failures: tuple[Failure, ...]
    throughput: Mapping[str, Throughput] = field(default_factory=dict)
    model_calls: int = 0
    judge_calls: int = 0

    def cell(self, task: str, model: str, rounds: int) -> Cell | None:
        for cell in self.cells:
            if (cell.task, cell.model, cell.rounds) == (task, model, rounds):
                return cell
        return None

    def quality_lists(self) -> dict[str, dict[str, tuple[list[float], list[int]]]]:
        """``{model: {task: ([Q0..QR], [n0..nR])}}`` for every complete task list."""
        lists: dict[str, dict[str, tuple[list[float], list[int]]]] = {}
        for task, model in dict.fromkeys((c.task, c.model) for c in self.cells):
            column = [self.cell(task, model, r) for r in range(self.rounds + 1)]
            means = [c.mean if c is not None else None for c in column]
            if any(m is None for m in means):
                continue
            counts = [c.n for c in column if c is not None]
            lists.setdefault(model, {})[task] = ([m for m in means if m is not None], counts)
        return lists


def summary_table(calibration: Calibration) -> str:
    """A fixed-width text table: task, model, rounds, mean, n, failures."""
    header = ("task", "model", "rounds", "mean", "n", "failures")
    rows = [
        (c.task, c.model, str(c.rounds), _mean(c), str(c.n), str(c.failures))
        for c in calibration.cells
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    head = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    return "\n".join([head, "  ".join("-" * w for w in widths), *lines])


def _mean(cell: Cell) -> str:
    return "-" if cell.mean is None else f"{cell.mean:.2f}"


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
                found = [scores.get((model, qid, r)) for qid in ids]
                graded = tuple(s for s in found if s is not None)
                cells.append(Cell(task, model, r, graded, len(found) - len(graded)))
    return tuple(cells)
