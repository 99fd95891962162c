"""Samples and selections for every model and question whose task measures a technique.

For each such question (after its draft is answered): the largest size's samples are made
once, by ``select`` itself running ``vote`` at that size on a replay of the draft
(``proxy.calibrate.samples``); then every variant (``techniques.variants``) selects among the
same answers. Records and selections are written to the run directory's ``samples/`` as they
are made; with ``resume`` a record is reused when it was made for the same serving entry,
question, sampling and selection temperature and holds enough samples, and its selections
when they were made on the same draft under the same ``selection`` settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from proxy.backends.base import Backend, Message, SamplingParams
from proxy.errors import PerficsError

from .answers import AnswerRecord
from .progress import Progress
from .questions import Question
from .samples import SampleRecord
from .scores import Failure
from .store import RunStore, fingerprint
from .techniques import Chosen, Variant, choose, largest, sizes_for, variants

if TYPE_CHECKING:
    from routing.policy import Policy

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class SelectionRun:
    """What ``select_all`` produced: per ``(model, question_id)`` the sample record and the
    choice of every variant by name; per ``(model, task)`` the variants run; the answers the
    models made (samples and likelihood scores excluded); and per ``(model, task)`` the wall
    seconds of each question's samples (as made in this run or recorded)."""

    records: dict[tuple[str, str], SampleRecord] = field(default_factory=dict)
    chosen: dict[tuple[str, str], dict[str, Chosen]] = field(default_factory=dict)
    measured: dict[tuple[str, str], tuple[Variant, ...]] = field(default_factory=dict)
    made: int = 0
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    sizes: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SelectionSettings:
    samples: tuple[int, ...] = ()
    techniques: tuple[str, ...] | None = None


def planned(
    policy: Policy,
    models: Sequence[str],
    questions: Sequence[Question],
    settings: SelectionSettings,
) -> dict[tuple[str, str], int]:
    """The largest size per ``(model, question_id)`` that measures a technique."""
    found = {}
    for model in models:
        for question in questions:
            sizes = sizes_for(
                policy,
                model,
                question.task,
                samples=settings.samples,
                techniques=settings.techniques,
            )
            if sizes:
                found[(model, question.question_id)] = largest(sizes)
    return found


async def select_all(
    policy: Policy,
    questions: Sequence[Question],
    models: Mapping[str, Backend],
    answers: Mapping[tuple[str, str], AnswerRecord],
    store: RunStore,
    settings: SelectionSettings,
    *,
    params_for: Callable[[str, Question], SamplingParams],
    serving: Mapping[str, Any],
    resume: bool,
    progress: Progress,
    failures: list[Failure],
) -> SelectionRun:
    """Sample and select for every question that measures a technique (see the module
    docstring). ``params_for(model, question)`` is the draft's sampling; ``serving[model]``
    the model's serving entry (it keys the records)."""
    run = SelectionRun()
    selection = policy.selection
    for model, backend in models.items():
        for question in questions:
            qid, task = question.question_id, question.task
            sizes = sizes_for(
                policy, model, task, samples=settings.samples, techniques=settings.techniques
            )
            answer = answers.get((model, qid))
            if not sizes or answer is None:
                continue
            todo = variants(sizes, selection.checks)
            run.measured[(model, task)] = todo
            size = largest(sizes)
            run.sizes[(model, qid)] = size
            params = params_for(model, question)
            messages: list[Message] = [{"role": "user", "content": question.prompt}]
            key = fingerprint(
                [serving[model], question.prompt, repr(params), selection.temperature]
            )
            on = fingerprint([answer.draft, selection.model_dump(mode="json")])
            cached = store.load_samples(model, qid) if resume else None
            record, chosen = SampleRecord(), {}
            if cached is not None and cached.get("key") == key:
                record = SampleRecord.from_json(cached["record"])
                if len(record.samples) < size - 1:
                    record = SampleRecord()
                elif cached.get("on") == on:
                    chosen = {n: Chosen.from_json(c) for n, c in cached["chosen"].items()}
            try:
                for variant in (Variant("vote", size, selection.checks), *todo):
                    if variant.name in chosen:
                        progress.skip(1)
                        continue
                    pick, made = await choose(
                        backend, answer.draft, record, messages, params, variant, selection
                    )
                    run.made += made
                    chosen[variant.name] = pick
                    progress.advance(1 + made, f"selected {model} q{qid} {variant.name}")
            except PerficsError as exc:
                failures.append(Failure("samples", model, qid, None, str(exc)))
                log.warning("calibrate.samples_failed", model=model, question=qid)
                continue
            store.save_samples(
                model,
                qid,
                {
                    "key": key,
                    "on": on,
                    "record": record.to_json(),
                    "chosen": {n: c.to_json() for n, c in chosen.items()},
                },
            )
            run.records[(model, qid)] = record
            run.chosen[(model, qid)] = chosen
            run.seconds.setdefault((model, task), []).append(record.seconds)
    return run
