"""Selection techniques measured: which sizes to run, one question's selections, and the
figures per task, model, technique and size.

A ``Variant`` is one way to select: ``best_of`` or ``vote`` at ``k`` answers, with the
request's code checks run or not (``checks``: the policy's ``selection.checks``; the ablation
flips it for ``best_of``, which is the only technique that reads checks). ``choose`` runs
``proxy.selection.select.select`` on a replay (``proxy.calibrate.samples``), so every variant
of one question chooses among the same draft and samples, and reports which answer won
(``index``: 0 the draft, ``i`` the ``i``-th sample) and the rule that decided
(``selected_by``: checks, agreement, likelihood or draft).

``TechniqueCell`` (``proxy.calibrate.scores``) holds a variant's grades on one task and
model, question by question, with the rule that decided each; ``any`` cells hold the best
grade among the first ``k`` answers (an oracle that reads the hidden tests: the ceiling no
selector can pass). Gains are paired differences with the draft's grades on the same
questions (``proxy.calibrate.stats``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.backends.base import Backend, Message, SamplingParams
from proxy.events import Finished
from proxy.selection.checks import RequestChecks
from proxy.selection.select import select
from routing.budget import no_budget
from routing.techniques import MIN_SAMPLES, SELECTION_TECHNIQUES

from .samples import SampleRecord, replay
from .scores import TechniqueCell, gain_text, table

if TYPE_CHECKING:
    from routing.policy import Policy, Selection

    from .scores import Calibration

MAX_SAMPLES = 16
"""The most answers one selection is calibrated with (the embedded backend's batch limit)."""

ORACLE = "any"


@dataclass(frozen=True, slots=True, order=True)
class Variant:
    technique: str
    k: int
    checks: bool

    @property
    def name(self) -> str:
        return f"{self.technique}/{self.k}" + ("" if self.checks else "/no-checks")


@dataclass(frozen=True, slots=True)
class Chosen:
    """The answer a selection returned (``index`` 0: the draft; ``i``: sample ``i``), the rule
    that chose it, and how many answers the selection made (the draft included)."""

    index: int
    selected_by: str
    samples: int

    def to_json(self) -> dict[str, int | str]:
        return {"index": self.index, "selected_by": self.selected_by, "samples": self.samples}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Chosen:
        return cls(int(str(data["index"])), str(data["selected_by"]), int(str(data["samples"])))


def sizes_for(
    policy: Policy,
    model: str,
    task: str,
    *,
    samples: Sequence[int],
    techniques: Sequence[str] | None,
) -> dict[str, tuple[int, ...]]:
    """The sizes to measure per technique for one model and task: ``samples`` (the
    ``--samples`` flag) for every technique in ``techniques`` (default both); without it, the
    sizes the policy lists for that model and task, of those techniques."""
    wanted = SELECTION_TECHNIQUES if techniques is None else tuple(techniques)
    if samples:
        return {t: tuple(sorted(set(samples))) for t in wanted}
    listed: dict[str, list[int]] = {}
    for technique, k, _ in policy.model(model).sampled_quality(task):
        if technique in wanted:
            listed.setdefault(technique, []).append(k)
    return {t: tuple(sorted(ks)) for t, ks in listed.items() if ks}


def variants(sizes: Mapping[str, Sequence[int]], checks: bool) -> tuple[Variant, ...]:
    """What a question is selected under: every listed technique and size with the policy's
    checks, then ``best_of`` with them flipped (the ablation)."""
    measured = [Variant(t, k, checks) for t, ks in sizes.items() for k in ks]
    flipped = [Variant("best_of", k, not checks) for k in sizes.get("best_of", ())]
    return tuple(measured + flipped)


def largest(sizes: Mapping[str, Sequence[int]]) -> int:
    return max((k for ks in sizes.values() for k in ks), default=0)


def check_sizes(samples: Sequence[int]) -> None:
    """``ValueError`` for a size outside ``MIN_SAMPLES`` .. ``MAX_SAMPLES``."""
    bad = [k for k in samples if not MIN_SAMPLES <= k <= MAX_SAMPLES]
    if bad:
        raise ValueError(
            f"sample counts must be {MIN_SAMPLES} to {MAX_SAMPLES}, got {', '.join(map(str, bad))}"
        )


async def choose(
    backend: Backend,
    draft: str,
    record: SampleRecord,
    messages: Sequence[Message],
    params: SamplingParams,
    variant: Variant,
    selection: Selection,
) -> tuple[Chosen, int]:
    """Select as a request planned with ``variant`` would, on ``record``'s samples (made by
    ``backend`` where missing). Returns the choice and how many answers the model made."""
    checks = RequestChecks.build(
        messages, params, code=variant.checks, time_limit_s=selection.time_limit_s
    )
    source = replay(backend, draft, record)
    events = select(
        source,
        messages,
        params,
        technique=variant.technique,
        samples=variant.k,
        checks=checks,
        temperature=selection.temperature,
        budget=no_budget(),
    )
    async for event in events:
        if isinstance(event, Finished):
            result = event.result
            answers = [draft, *(s.text for s in record.samples[: variant.k - 1])]
            index = answers.index(result.text) if result.text in answers else 0
            return Chosen(index, result.selected_by or "draft", result.samples), source.made
    raise AssertionError("select ended without Finished")


def build_technique_cells(
    tasks: Sequence[tuple[str, str]],
    chosen: Mapping[tuple[str, str], Mapping[str, Chosen]],
    measured: Mapping[tuple[str, str], tuple[Variant, ...]],
    grades: Mapping[tuple[str, str], Sequence[float | None]],
) -> tuple[TechniqueCell, ...]:
    """Cells for every variant measured, and the ``any`` oracle at each size. ``tasks`` pairs
    question ids with their task; ``chosen[(model, qid)][variant name]`` is a selection;
    ``measured[(model, task)]`` the variants run there; ``grades[(model, qid)]`` the grade of
    every answer (the draft first, then each sample; None where grading failed)."""
    task_of = dict(tasks)
    cells: list[TechniqueCell] = []
    for (model, task), run in measured.items():
        ids = [qid for qid, t in tasks if t == task and (model, qid) in chosen]
        for variant in run:
            graded, decided, made = [], [], []
            for qid in ids:
                pick = chosen[(model, qid)].get(variant.name)
                score = grades[(model, qid)][pick.index] if pick is not None else None
                if pick is None or score is None:
                    continue
                graded.append((qid, score))
                decided.append((qid, pick.selected_by))
                made.append(pick.samples)
            cells.append(
                TechniqueCell(
                    task,
                    model,
                    variant.technique,
                    variant.k,
                    variant.checks,
                    tuple(graded),
                    tuple(decided),
                    tuple(made),
                )
            )
        for k in sorted({v.k for v in run}):
            best = []
            for qid in ids:
                found = [g for g in grades[(model, qid)][:k] if g is not None]
                if found and task_of[qid] == task:
                    best.append((qid, max(found)))
            cells.append(TechniqueCell(task, model, ORACLE, k, False, tuple(best)))
    return tuple(cells)


def technique_table(calibration: Calibration, *, ablation: bool) -> str:
    """The measured techniques (``ablation`` false: each with the policy's checks setting)
    or the ablation on the same samples (``best_of`` with the checks flipped, and the ``any``
    oracle), per task, model and size: n, mean with its 95 % interval, the paired difference
    with the draft, what decided, and the answers made per question."""
    header = (
        *("task", "model", "technique", "k", "checks", "n", "mean", "95% CI"),
        *("vs draft", "shows", "decided", "made"),
    )
    rows = []
    for cell in sorted(calibration.techniques, key=_order):
        is_main = cell.technique != ORACLE and cell.checks == calibration.selection_checks
        if is_main == ablation:
            continue
        interval, gain = cell.interval, calibration.technique_gain(cell)
        rows.append(
            (
                cell.task,
                cell.model,
                cell.technique,
                str(cell.k),
                "-" if cell.technique in (ORACLE, "vote") else ("on" if cell.checks else "off"),
                str(cell.n),
                f"{interval.mean:.2f}" if cell.n else "-",
                f"[{interval.low:.2f}, {interval.high:.2f}]" if cell.n else "-",
                gain_text(gain) if gain is not None else "",
                gain.verdict() if gain is not None else "",
                ", ".join(f"{rule} {count}" for rule, count in sorted(cell.rules().items())),
                f"{cell.mean_samples:.1f}" if cell.samples_made else "",
            )
        )
    return table(header, rows)


def _order(cell: TechniqueCell) -> tuple[str, str, int, int, bool]:
    rank = {"best_of": 0, "vote": 1, ORACLE: 2}.get(cell.technique, 3)
    return (cell.task, cell.model, cell.k, rank, not cell.checks)
