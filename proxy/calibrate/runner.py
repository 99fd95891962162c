"""Run a calibration: answer every question on every model, grade the answers, tally them.

Answers come from ``proxy.refine.refine``, the engine the proxy serves with, at temperature 0
with a fixed seed and ``max_tokens`` = the task's ``answer_tokens``. One draft and R rounds give
every round count 0..R (``AnswerRecord.answer_after``). Each distinct answer text is graded once:
by the question's own grader when it has one (``proxy.calibrate.graders``; code runs in a
sandbox, in a worker thread), else by the judge. Every rewrite's review records the verdict of
every acceptance rule, so one run also compares the rules after one round (the ablation:
``AnswerRecord.first_round_under``). Answers and grades are written to the run directory as
they are made; with ``resume`` they are read back instead of asking the models again.

Where the run measures selection techniques (``SelectionSettings``: the ``--samples`` sizes,
else those the policy lists for the model and task), each such question's samples are made
after its draft and every variant selects among them (``proxy.calibrate.selections``); every
sample is graded too, so the figures include what an oracle could have picked.

Answers are made with the pipeline's sampling: the task's ``answer_tokens``, temperature 0, the
seed, and the model's ``defaults`` filling the fields left unset (``top_p`` and the like, which
shape the samples drawn at ``selection.temperature``).

Backend errors (``proxy.errors.PerficsError``) on one question are counted as failures and the
run goes on; any other exception (an interrupt) ends the run, keeping what was written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from proxy.acceptance import RULES
from proxy.backends.base import Backend, SamplingParams
from proxy.errors import PerficsError
from proxy.events import Finished
from proxy.refine import RefinementPrompts, refine
from routing.budget import no_budget

from .answers import AnswerRecord
from .judge import RUBRIC_VERSION, Grade, grade
from .progress import Progress
from .questions import Question
from .scores import AblationRow, Calibration, Cell, Failure, TechniqueCell, build_cells, pair
from .selections import SelectionRun, SelectionSettings, planned, select_all
from .store import DEFAULT_ROOT, RunStore, fingerprint
from .techniques import build_technique_cells
from .throughput import CallTiming, TimedBackend, throughput

if TYPE_CHECKING:
    from routing.policy import ModelSpec, Policy

log = structlog.get_logger(__name__)

# Policy fields that do not change what a model answers; left out of cache keys.
_NOT_SERVING = frozenset(
    {
        "quality",
        "hardware",
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "description",
        "capabilities",
    }
)


@dataclass(frozen=True, slots=True)
class CalibrationSettings:
    rounds: int = 2
    seed: int = 0
    judge_max_tokens: int = 256
    judge_retries: int = 2
    resume: bool = False
    suites: tuple[str, ...] = ()
    selection: SelectionSettings = field(default_factory=SelectionSettings)


def task_suites(questions: Sequence[Question]) -> dict[str, tuple[str, ...]]:
    """The suites (or question files) each task's questions came from, in order."""
    found: dict[str, dict[str, None]] = {}
    for question in questions:
        origin = Path(question.source.rsplit(":", 1)[0]).name or "questions"
        found.setdefault(question.task, {})[origin.removesuffix(".jsonl")] = None
    return {task: tuple(origins) for task, origins in found.items()}


def refinement_prompts(policy: Policy) -> RefinementPrompts:
    """The prompts the proxy refines with under ``policy`` (as ``proxy.runtime`` builds them)."""
    refinement = policy.refinement
    return RefinementPrompts(
        critique=refinement.critique_prompt,
        rewrite=refinement.rewrite_prompt,
        stop_phrase=refinement.stop_phrase,
        critique_max_tokens=refinement.critique_max_tokens,
        accept=refinement.accept,
    )


def default_run_dir(
    policy: Policy, questions: Sequence[Question], judge: str | None, settings: CalibrationSettings
) -> Path:
    """``.perfics/calibrate/<fingerprint>`` of everything that decides answers and grades."""
    key = {
        "models": [_serving_entry(spec) for spec in policy.models],
        "refinement": _dump(policy.refinement),
        "answer_tokens": {name: task.answer_tokens for name, task in policy.tasks.items()},
        "questions": [
            [q.question_id, q.prompt, q.reference, q.task, q.grader_spec] for q in questions
        ],
        "judge": judge,
        "seed": settings.seed,
    }
    return DEFAULT_ROOT / fingerprint(key)


async def calibrate(
    policy: Policy,
    questions: Sequence[Question],
    models: Mapping[str, Backend],
    judge: Backend | None,
    store: RunStore,
    settings: CalibrationSettings,
    *,
    progress_stream: TextIO | None = None,
) -> Calibration:
    """Answer, grade and tally. ``models`` maps each model to calibrate to its started
    backend; ``judge`` is the judge's started backend (it may be one of ``models``), needed
    only when a question has no grader of its own (``ValueError`` otherwise)."""
    if judge is None and any(q.judged for q in questions):
        raise ValueError("questions without a grader need a judge")
    rounds = settings.rounds
    answer_units = 1 + 2 * rounds
    ablated = len(RULES) if rounds else 0
    total = len(models) * len(questions) * (answer_units + rounds + 1 + ablated)
    sampled = planned(policy, list(models), questions, settings.selection)
    total += sum(3 * size for size in sampled.values())
    progress = Progress(total, progress_stream)
    failures: list[Failure] = []
    answers, model_calls = await _answer_all(
        policy, questions, models, store, settings, progress, failures
    )
    selected = SelectionRun()
    if sampled:
        selected = await select_all(
            policy,
            questions,
            models,
            answers,
            store,
            settings.selection,
            params_for=lambda model, question: answer_params(policy, model, question, settings),
            serving={model: _serving_entry(policy.model(model)) for model in models},
            resume=settings.resume,
            progress=progress,
            failures=failures,
        )
    grading = _Grading(judge, store, settings, progress)
    scores = await _grade_all(questions, answers, grading, failures)
    pairs = [(q.question_id, q.task) for q in questions]
    cells = build_cells(pairs, list(models), rounds, scores)
    ablation = await _ablation(questions, answers, grading, cells) if rounds else ()
    techniques = await _grade_selections(questions, answers, selected, grading)
    progress.close()
    speeds = {
        model: throughput(
            record.draft_timing
            for (m, _), record in answers.items()
            if m == model and record.draft_timing is not None
        )
        for model in models
    }
    return Calibration(
        judge=judge.model_id if judge is not None and any(q.judged for q in questions) else None,
        rounds=rounds,
        cells=cells,
        failures=tuple(failures),
        throughput=speeds,
        model_calls=model_calls,
        judge_calls=grading.judge_calls,
        suites=settings.suites,
        task_suites=task_suites(questions),
        ablation=ablation,
        checks=grading.checks,
        techniques=techniques,
        samples_made=selected.made,
        selection_checks=policy.selection.checks,
        latency=_latency(answers, selected, {q.question_id: q.task for q in questions}),
    )


async def _answer_all(
    policy: Policy,
    questions: Sequence[Question],
    models: Mapping[str, Backend],
    store: RunStore,
    settings: CalibrationSettings,
    progress: Progress,
    failures: list[Failure],
) -> tuple[dict[tuple[str, str], AnswerRecord], int]:
    """Every ``(model, question_id)``'s answer record, and the model calls made for them."""
    rounds = settings.rounds
    units = 1 + 2 * rounds
    prompts = refinement_prompts(policy)
    answers: dict[tuple[str, str], AnswerRecord] = {}
    calls = 0
    for model, backend in models.items():
        timed = TimedBackend(backend)
        spec = policy.model(model)
        for question in questions:
            qid = question.question_id
            params = answer_params(policy, model, question, settings)
            key = _answer_key(policy, spec, question, params)
            cached = store.load_answer(model, qid) if settings.resume else None
            if cached is not None and cached.get("key") == key:
                record = AnswerRecord.from_json(cached["answer"])
                if record.covers(rounds):
                    answers[(model, qid)] = record
                    progress.skip(units)
                    continue
            calls_before = len(timed.calls)
            try:
                record = await _answer(timed, question, params, rounds, prompts)
            except PerficsError as exc:
                failures.append(Failure("answer", model, qid, None, str(exc)))
                log.warning("calibrate.answer_failed", model=model, question=qid)
                progress.advance(units, f"{model} q{qid} failed")
                continue
            finally:
                calls += len(timed.calls) - calls_before
            store.save_answer(model, qid, {"key": key, "answer": record.to_json()})
            answers[(model, qid)] = record
            progress.advance(units, f"answered {model} q{qid}")
    return answers, calls


def answer_params(
    policy: Policy, model: str, question: Question, settings: CalibrationSettings
) -> SamplingParams:
    """A question's draft sampling, as the pipeline would send it: the task's answer length,
    temperature 0 and the seed, with the model's ``defaults`` filling the rest."""
    params = SamplingParams(
        max_tokens=policy.tasks[question.task].answer_tokens,
        temperature=0.0,
        seed=settings.seed,
    )
    return params.with_defaults(policy.model(model).defaults.given())


class _Grading:
    """Grades answer texts, each distinct (question, text) once: by the question's grader
    (in a worker thread: ``python_tests`` waits on a sandboxed process) or by the judge.
    Counts the judge calls and grader checks it makes; cached grades count nothing."""

    def __init__(
        self,
        judge: Backend | None,
        store: RunStore,
        settings: CalibrationSettings,
        progress: Progress,
    ) -> None:
        self.judge = judge
        self.store = store
        self.settings = settings
        self.progress = progress
        self.params = SamplingParams(
            max_tokens=settings.judge_max_tokens, temperature=0.0, seed=settings.seed
        )
        self.judge_calls = 0
        self.checks = 0
        self._done: dict[str, Grade | None] = {}

    async def grade(self, question: Question, text: str, label: str) -> Grade | None:
        """The grade of ``text`` as an answer to ``question``; ``None`` when the judge's backend
        failed (not cached: a later resume asks again)."""
        key = self._key(question, text)
        if key in self._done:
            self.progress.skip(1)
            return self._done[key]
        cached = self.store.load_grade(key) if self.settings.resume else None
        if cached is not None:
            result: Grade | None = Grade(
                cached["score"], tuple(cached["replies"]), cached.get("error")
            )
            self.progress.skip(1)
        elif question.grader is not None:
            verdict = await asyncio.to_thread(question.grader.check, text)
            self.checks += 1
            result = Grade(verdict.score, (verdict.detail,))
            self.store.save_grade(key, {"score": verdict.score, "replies": [verdict.detail]})
            self.progress.advance(1, label)
        else:
            result = await self._judge(question, text, key)
            self.progress.advance(1, label)
        self._done[key] = result
        return result

    def _key(self, question: Question, text: str) -> str:
        if question.grader is not None:
            return fingerprint(["verdict", question.grader_spec, text])
        assert self.judge is not None
        return fingerprint(
            [RUBRIC_VERSION, self.judge.model_id, question.prompt, question.reference, text]
        )

    async def _judge(self, question: Question, text: str, key: str) -> Grade | None:
        judge = self.judge
        assert judge is not None
        try:
            result = await grade(
                judge,
                question.prompt,
                text,
                question.reference,
                self.params,
                retries=self.settings.judge_retries,
            )
        except PerficsError:
            log.warning(
                "calibrate.judge_failed", judge=judge.model_id, question=question.question_id
            )
            self.judge_calls += 1
            return None
        self.judge_calls += result.attempts
        self.store.save_grade(
            key, {"score": result.score, "replies": list(result.replies), "error": result.error}
        )
        if result.score is None:
            log.info(
                "calibrate.grade_unparsed", question=question.question_id, attempts=result.attempts
            )
        return result


async def _grade_all(
    questions: Sequence[Question],
    answers: Mapping[tuple[str, str], AnswerRecord],
    grading: _Grading,
    failures: list[Failure],
) -> dict[tuple[str, str, int], float | None]:
    """The score of every ``(model, question_id, rounds)`` answer (``None``: a failure)."""
    by_id = {q.question_id: q for q in questions}
    scores: dict[tuple[str, str, int], float | None] = {}
    for (model, qid), record in answers.items():
        for r in range(grading.settings.rounds + 1):
            result = await grading.grade(
                by_id[qid], record.answer_after(r), f"graded {model} q{qid} r{r}"
            )
            if result is None or result.score is None:
                reason = "judge backend failed" if result is None else str(result.error)
                failures.append(Failure("grade", model, qid, r, reason))
            scores[(model, qid, r)] = None if result is None else result.score
    return scores


async def _ablation(
    questions: Sequence[Question],
    answers: Mapping[tuple[str, str], AnswerRecord],
    grading: _Grading,
    cells: Sequence[Cell],
) -> tuple[AblationRow, ...]:
    """Every acceptance rule after one round, per task and model, on the same rewrites."""
    by_id = {q.question_id: q for q in questions}
    drafts = {(c.task, c.model): c.graded for c in cells if c.rounds == 0}
    rows: list[AblationRow] = []
    for task, model in drafts:
        records = [
            (qid, record)
            for (m, qid), record in answers.items()
            if m == model and by_id[qid].task == task
        ]
        for rule in RULES:
            graded: list[tuple[str, float]] = []
            rewrites = kept = calls = 0
            for qid, record in records:
                text, was_kept, made = record.first_round_under(rule)
                rewrites += was_kept is not None
                kept += bool(was_kept)
                calls += made
                result = await grading.grade(by_id[qid], text, f"ablation {model} q{qid} {rule}")
                if result is not None and result.score is not None:
                    graded.append((qid, result.score))
            rows.append(
                AblationRow(
                    task,
                    model,
                    rule,
                    tuple(graded),
                    pair(graded, drafts[(task, model)]),
                    rewrites,
                    kept,
                    calls,
                )
            )
    return tuple(rows)


async def _grade_selections(
    questions: Sequence[Question],
    answers: Mapping[tuple[str, str], AnswerRecord],
    selected: SelectionRun,
    grading: _Grading,
) -> tuple[TechniqueCell, ...]:
    """Grade the draft and every sample of each question that measured a technique, then
    tally every variant's choices (``techniques.build_technique_cells``)."""
    by_id = {q.question_id: q for q in questions}
    grades: dict[tuple[str, str], list[float | None]] = {}
    for (model, qid), record in selected.records.items():
        texts = [answers[(model, qid)].draft]
        texts += [s.text for s in record.samples[: selected.sizes[(model, qid)] - 1]]
        found: list[float | None] = []
        for i, text in enumerate(texts):
            result = await grading.grade(by_id[qid], text, f"graded {model} q{qid} sample {i}")
            found.append(None if result is None else result.score)
        grades[(model, qid)] = found
    pairs = [(q.question_id, q.task) for q in questions]
    return build_technique_cells(pairs, selected.chosen, selected.measured, grades)


def _latency(
    answers: Mapping[tuple[str, str], AnswerRecord],
    selected: SelectionRun,
    tasks: Mapping[str, str],
) -> dict[tuple[str, str], tuple[float, float]]:
    """Per ``(model, task)`` that measured a technique: the mean seconds of a draft and of
    its largest size's samples."""
    found: dict[tuple[str, str], tuple[float, float]] = {}
    for (model, task), seconds in selected.seconds.items():
        drafts = [
            record.draft_timing.total_s
            for (m, qid), record in answers.items()
            if m == model and tasks[qid] == task and record.draft_timing is not None
        ]
        if seconds and drafts:
            found[(model, task)] = (sum(drafts) / len(drafts), sum(seconds) / len(seconds))
    return found


async def _answer(
    timed: TimedBackend,
    question: Question,
    params: SamplingParams,
    rounds: int,
    prompts: RefinementPrompts,
) -> AnswerRecord:
    first_call = len(timed.calls)
    async for event in refine(
        timed,
        [{"role": "user", "content": question.prompt}],
        params,
        rounds=rounds,
        prompts=prompts,
        budget=no_budget(),
        live=False,
        record_reviews=True,
    ):
        if isinstance(event, Finished):
            timing: CallTiming = timed.calls[first_call][0]
            draft = timed.calls[first_call][1].text
            return AnswerRecord.from_refined(event.result, draft, rounds, timing)
    raise AssertionError("refine ended without Finished")


def _answer_key(policy: Policy, spec: ModelSpec, question: Question, params: SamplingParams) -> str:
    return fingerprint(
        [
            _serving_entry(spec),
            _dump(policy.refinement),
            question.prompt,
            params.max_tokens,
            params.seed,
        ]
    )


def _serving_entry(spec: ModelSpec) -> dict[str, Any]:
    return {k: v for k, v in _dump(spec).items() if k not in _NOT_SERVING}


def _dump(model: Any) -> dict[str, Any]:
    dumped = model.model_dump(mode="json")
    assert isinstance(dumped, dict)
    return dumped
