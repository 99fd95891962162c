"""What a calibration writes for one model's task: the refine list, the technique tables,
and the comments that say where each figure came from.

A task measured with rounds gets ``[Q0, ..., QR]`` (``Calibration.quality_lists``) and the
comment ``calibrated DATE: n=..., suites=..., judge=..., machine=...; r1 +g [low, high], ...``.
A task whose selection techniques were measured takes the mapping form: ``refine`` (that list,
or the one already in the file when the run measured no rounds: a techniques-only run leaves
a refine list and its comment as they are), and ``best_of`` / ``vote`` as ``{k: Q}`` with
``Q = Q0 + gain``: ``Q0`` the refine list's first figure, the gain the paired difference with
the draft measured here (with ``significant_only``, a gain whose interval includes zero counts
as none, so the planner, which ties to lower cost, keeps the draft). Their comment gives n,
the suites, the machine, the draft's mean in this run and each size's gain with its interval.
A technique table the run did not measure is kept as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ruamel.yaml.comments import CommentedMap

from .policy_text import flow, old_value, render
from .scores import Calibration, TechniqueCell, gain_text


@dataclass(frozen=True, slots=True)
class About:
    date: str
    machine: str
    significant_only: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """What one task's quality becomes: ``inline``, a value and its comment on the task's
    line (a plain list), or ``nested`` ``(key, value and comment)`` lines of the mapping form
    (``refine``, ``best_of``, ``vote``); ``changes`` in words."""

    inline: str | None
    nested: tuple[tuple[str, str], ...] = ()
    changes: tuple[str, ...] = ()


def task_entry(
    lines: list[str],
    quality: CommentedMap | None,
    model: str,
    task: str,
    fresh: tuple[list[float], list[int]] | None,
    measured: Mapping[str, Mapping[int, TechniqueCell]],
    calibration: Calibration,
    about: About,
) -> Entry | None:
    """The entry to write for ``task`` (None when there is nothing to anchor it on)."""
    old = quality.get(task) if quality is not None else None
    old_refine = old.get("refine") if isinstance(old, CommentedMap) else old
    # A techniques-only run (no rounds) leaves a refine list already written as it is.
    keep = fresh is None or (bool(measured) and calibration.rounds == 0 and old_refine)
    changes: list[str] = []
    if keep:
        if not old_refine:
            return None
        anchor = float(old_refine[0])
        assert quality is not None
        refine = old_value(lines, quality, task) if not isinstance(old, CommentedMap) else ""
    else:
        assert fresh is not None
        values, counts = fresh
        anchor = values[0]
        comment = _comment(about.date, counts, calibration, model, task, about.machine)
        refine = f"{flow(values)}  # {comment}"
        changes.append(
            f"{'.refine' if measured or isinstance(old, CommentedMap) else ''}: "
            f"{flow(old_refine) if old_refine else '(default)'} -> {values}"
        )
    if not measured and not isinstance(old, CommentedMap):
        return Entry(refine, changes=tuple(changes))
    nested: list[tuple[str, str]] = []
    if refine:
        nested.append(("refine", refine))
    elif isinstance(old, CommentedMap):
        nested.append(("refine", old_value(lines, old, "refine")))
    for technique in ("best_of", "vote"):
        if technique in measured:
            table, text = _table(measured[technique], anchor, calibration, about)
            nested.append((technique, text))
            before = old.get(technique) if isinstance(old, CommentedMap) else None
            changes.append(f".{technique}: {render(before) if before else '(none)'} -> {table}")
        elif isinstance(old, CommentedMap) and technique in old:
            nested.append((technique, old_value(lines, old, technique)))
    return Entry(None, tuple(nested), tuple(changes))


def _table(
    cells: Mapping[int, TechniqueCell], anchor: float, calibration: Calibration, about: About
) -> tuple[dict[int, float], str]:
    """A technique's ``{k: Q}`` and its line: ``Q = anchor + gain``, where ``anchor`` is the
    draft's Q in the refine list beside it and the gain is the paired difference with the
    draft measured here; with ``significant_only``, a gain whose interval includes zero
    counts as none."""
    values: dict[int, float] = {}
    gains: list[str] = []
    counts: list[int] = []
    draft = None
    for k in sorted(cells):
        cell = cells[k]
        gain = calibration.technique_gain(cell)
        if gain is None:
            continue
        shown = gain.distinguishable or not about.significant_only
        values[k] = round(min(10.0, max(0.0, anchor + (gain.mean if shown else 0.0))), 2)
        verdict = "" if gain.distinguishable else ", not shown"
        gains.append(f"k{k} {gain_text(gain)}{verdict}")
        counts.append(gain.n)
        draft_cell = calibration.cell(cell.task, cell.model, 0)
        draft = draft_cell.mean if draft_cell is not None else draft
    n = str(counts[0]) if len(set(counts)) == 1 else ",".join(map(str, counts))
    parts = [f"n={n}"]
    task = next(iter(cells.values())).task
    suites = calibration.task_suites.get(task) or calibration.suites
    if suites:
        parts.append(f"suites={'+'.join(suites)}")
    if about.machine:
        parts.append(f"machine={about.machine}")
    head = f"calibrated {about.date}: {', '.join(parts)}"
    measured_draft = f"draft {draft:.2f}, " if draft is not None else ""
    return values, f"{render(values)}  # {head}; {measured_draft}{', '.join(gains)}"


def _comment(
    date: str, counts: list[int], calibration: Calibration, model: str, task: str, machine: str
) -> str:
    n = str(counts[0]) if len(set(counts)) == 1 else ",".join(map(str, counts))
    parts = [f"n={n}"]
    suites = calibration.task_suites.get(task) or calibration.suites
    if suites:
        parts.append(f"suites={'+'.join(suites)}")
    if calibration.judge:
        parts.append(f"judge={calibration.judge}")
    if machine:
        parts.append(f"machine={machine}")
    gains = []
    for r in range(1, calibration.rounds + 1):
        gain = calibration.gain(task, model, r)
        if gain is not None:
            shown = "" if gain.distinguishable else ", not shown"
            gains.append(f"r{r} {gain_text(gain)}{shown}")
    text = f"calibrated {date}: {', '.join(parts)}"
    return f"{text}; {', '.join(gains)}" if gains else text
