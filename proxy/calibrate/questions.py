"""Benchmark questions and the task each one calibrates.

Questions use FastChat's ``question.jsonl`` format, one JSON object per line::

    {"question_id": 7, "category": "math", "turns": ["Solve 3x + 7 = 22."], "reference": ["x = 5"]}

Only the first turn is asked: refinement rewrites one answer to one request, and a later turn
would be conditioned on an answer that differs per model and per round count, so its grade
would no longer compare like with like. Later turns are read and ignored.

A line may carry a ``"grader"`` object (``proxy.calibrate.graders``): the answer is then checked
by that rule (``numeric``, ``exact``, ``constraints``, ``python_tests``) instead of by the judge
model; ``{"type": "judge"}`` or no grader means the judge grades it. Built-in suites
(``proxy.calibrate.suites``) are question lines of the same shape.

A question's task is ``tasks_map[category]`` when the map names the category, else the category
itself when the policy declares such a task, else the policy's ``default_task``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .graders import Grader, GraderError, parse_grader


class QuestionsError(ValueError):
    """A questions or tasks-map file that cannot be used; the message names file and line."""


@dataclass(frozen=True, slots=True)
class Question:
    """One question to calibrate with. ``grader`` is None when the judge grades it;
    ``grader_spec`` is the line's grader object (it keys cached verdicts); ``source`` says
    where the line came from (``FILE:LINE`` or ``suite:LINE``)."""

    question_id: str
    category: str
    prompt: str
    reference: str | None
    task: str
    grader: Grader | None = None
    grader_spec: Mapping[str, Any] | None = None
    source: str = ""

    @property
    def judged(self) -> bool:
        return self.grader is None


class _QuestionLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    question_id: int | str
    category: str = Field(min_length=1)
    turns: list[str] = Field(min_length=1)
    reference: list[str] | None = None
    grader: dict[str, Any] | None = None


def default_questions_path() -> Path:
    """The question set shipped with perfics (package data)."""
    return Path(str(resources.files("proxy.calibrate") / "data" / "questions.jsonl"))


def load_questions(
    path: str | Path, *, tasks: Sequence[str], default_task: str, tasks_map: Mapping[str, str]
) -> list[Question]:
    """Read a question file and assign each question its task. Raises ``QuestionsError`` on a
    malformed line or grader, a duplicate id, or a mapped task the policy does not declare."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QuestionsError(f"{path}: {exc.strerror}") from exc
    numbered = [(f"{path}:{number}", line) for number, line in enumerate(lines, 1)]
    return build_questions(
        numbered, str(path), tasks=tasks, default_task=default_task, tasks_map=tasks_map
    )


def build_questions(
    lines: Iterable[tuple[str, str | Mapping[str, Any]]],
    name: str,
    *,
    tasks: Sequence[str],
    default_task: str,
    tasks_map: Mapping[str, str],
) -> list[Question]:
    """Questions from ``(where, line)`` pairs: ``line`` a JSON text or an already decoded
    object, ``where`` the ``FILE:LINE`` that errors name. ``name`` names the whole set."""
    questions: list[Question] = []
    seen: set[str] = set()
    for where, line in lines:
        if isinstance(line, str) and not line.strip():
            continue
        try:
            raw = json.loads(line) if isinstance(line, str) else line
            parsed = _QuestionLine.model_validate(raw)
        except (ValueError, ValidationError) as exc:
            raise QuestionsError(f"{where}: {_first_error(exc)}") from exc
        question_id = str(parsed.question_id)
        if question_id in seen:
            raise QuestionsError(f"{where}: duplicate question_id {question_id}")
        seen.add(question_id)
        task = task_for(parsed.category, tasks=tasks, default_task=default_task, mapping=tasks_map)
        if task not in tasks:
            raise QuestionsError(
                f"{where}: category {parsed.category!r} maps to task {task!r}, "
                f"which the policy does not declare"
            )
        try:
            grader = parse_grader(parsed.grader) if parsed.grader is not None else None
        except GraderError as exc:
            raise QuestionsError(f"{where}: {exc}") from exc
        reference = "\n".join(parsed.reference) if parsed.reference else None
        questions.append(
            Question(
                question_id,
                parsed.category,
                parsed.turns[0],
                reference or None,
                task,
                grader,
                parsed.grader,
                where,
            )
        )
    if not questions:
        raise QuestionsError(f"{name}: no questions")
    return questions


def task_for(
    category: str, *, tasks: Sequence[str], default_task: str, mapping: Mapping[str, str]
) -> str:
    """The task a category calibrates (see the module docstring for the order)."""
    if category in mapping:
        return mapping[category]
    return category if category in tasks else default_task


def load_tasks_map(path: str | Path) -> dict[str, str]:
    """A ``{category: task}`` mapping from a YAML or JSON file (JSON is YAML)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QuestionsError(f"{path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise QuestionsError(f"{path}: not YAML or JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise QuestionsError(f"{path}: expected a mapping of category names to task names")
    return dict(data)


def limit_per_task(questions: Sequence[Question], per_task: int | None) -> list[Question]:
    """At most ``per_task`` questions of each task (all when ``None``), in their original
    order. When a task's questions come from several files or suites, they are taken from each
    in turn (the first of each, then the second of each, ...), so a limited task still mixes
    its sources."""
    if per_task is None:
        return list(questions)
    sources: dict[str, dict[str, list[Question]]] = {}
    for question in questions:
        origin = question.source.rsplit(":", 1)[0]
        sources.setdefault(question.task, {}).setdefault(origin, []).append(question)
    chosen: set[int] = set()
    for by_origin in sources.values():
        queues = [list(reversed(qs)) for qs in by_origin.values()]
        taken = 0
        while taken < per_task and any(queues):
            for queue in queues:
                if queue and taken < per_task:
                    chosen.add(id(queue.pop()))
                    taken += 1
    return [q for q in questions if id(q) in chosen]


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return f"not JSON: {exc}"
