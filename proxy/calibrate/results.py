"""A calibration's figures as JSON (``perfics calibrate --results FILE``), and back.

The file holds every cell (task, model, round count) with n, mean, its 95 % interval and the
paired gain over the draft, the acceptance-rule ablation, every selection technique measured
(``techniques``: each variant and the ``any`` oracle, with the rule that decided each question
and the answers it made), the failures, and each question's grade, so a reader can recompute
any figure; ``perfics report --calibration FILE`` draws the
intervals from it. No prompt or answer text is written: the run directory keeps those.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .questions import Question
from .scores import AblationRow, Calibration, Cell, TechniqueCell, pair
from .stats import Interval, PairedDifference

FORMAT = 1


def write_results(
    path: Path, calibration: Calibration, questions: Sequence[Question], *, wall_s: float
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(to_json(calibration, questions, wall_s=wall_s), indent=1) + "\n",
        encoding="utf-8",
    )


def to_json(
    calibration: Calibration, questions: Sequence[Question], *, wall_s: float
) -> dict[str, Any]:
    sources = {q.question_id: q.source for q in questions}
    return {
        "format": FORMAT,
        "suites": list(calibration.suites),
        "judge": calibration.judge,
        "rounds": calibration.rounds,
        "wall_s": round(wall_s, 1),
        "model_calls": calibration.model_calls,
        "judge_calls": calibration.judge_calls,
        "grader_checks": calibration.checks,
        "cells": [_cell(calibration, cell) for cell in calibration.cells],
        "ablation": [_ablation(row) for row in calibration.ablation],
        "techniques": [_technique(calibration, cell) for cell in calibration.techniques],
        "samples_made": calibration.samples_made,
        "seconds": {
            f"{model} {task}": {"draft": round(draft, 2), "samples": round(samples, 2)}
            for (model, task), (draft, samples) in calibration.latency.items()
        },
        "failures": [
            {
                "stage": f.stage,
                "model": f.model,
                "question_id": f.question_id,
                "rounds": f.rounds,
                "reason": f.reason,
            }
            for f in calibration.failures
        ],
        "throughput": {
            model: {
                "prefill_tokens_per_s": speed.prefill_tokens_per_s,
                "decode_tokens_per_s": speed.decode_tokens_per_s,
                "calls": speed.calls,
            }
            for model, speed in calibration.throughput.items()
        },
        "questions": sources,
    }


def _cell(calibration: Calibration, cell: Cell) -> dict[str, Any]:
    return {
        "task": cell.task,
        "model": cell.model,
        "rounds": cell.rounds,
        "failures": cell.failures,
        **_interval(cell.interval),
        "gain": _gain(calibration.gain(cell.task, cell.model, cell.rounds)),
        "grades": dict(cell.graded),
    }


def _ablation(row: AblationRow) -> dict[str, Any]:
    return {
        "task": row.task,
        "model": row.model,
        "rule": row.rule,
        **_interval(row.interval),
        "gain": _gain(row.gain),
        "rewrites": row.rewrites,
        "kept": row.kept,
        "extra_calls": row.extra_calls,
        "grades": dict(row.graded),
    }


def _technique(calibration: Calibration, cell: TechniqueCell) -> dict[str, Any]:
    return {
        "task": cell.task,
        "model": cell.model,
        "technique": cell.technique,
        "k": cell.k,
        "checks": cell.checks,
        **_interval(cell.interval),
        "gain": _gain(calibration.technique_gain(cell)),
        "decided": cell.rules(),
        "mean_samples": round(cell.mean_samples, 3),
        "grades": dict(cell.graded),
        "selected_by": dict(cell.decided),
    }


def _interval(interval: Interval) -> dict[str, Any]:
    return {
        "n": interval.n,
        "mean": _number(interval.mean),
        "low": _number(interval.low),
        "high": _number(interval.high),
        "interval": interval.method,
    }


def _gain(gain: PairedDifference | None) -> dict[str, Any] | None:
    if gain is None:
        return None
    return {
        "n": gain.n,
        "mean": _number(gain.mean),
        "low": _number(gain.low),
        "high": _number(gain.high),
        "better": gain.better,
        "worse": gain.worse,
        "p_value": _number(gain.p_value),
        "shows": gain.verdict(),
    }


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, 4)


def load_cells(path: Path) -> list[tuple[Cell, PairedDifference | None]]:
    """The cells of a results file with their recomputed gains (for ``perfics report``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a perfics calibration results file (format {FORMAT})")
    cells = [
        Cell(
            c["task"],
            c["model"],
            int(c["rounds"]),
            tuple((str(q), float(s)) for q, s in c["grades"].items()),
            int(c["failures"]),
        )
        for c in data["cells"]
    ]
    drafts = {(c.task, c.model): c.graded for c in cells if c.rounds == 0}
    return [
        (c, pair(c.graded, drafts[(c.task, c.model)]) if c.rounds else None)
        for c in cells
        if (c.task, c.model) in drafts
    ]
