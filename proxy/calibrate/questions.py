"""Benchmark questions and the task each one calibrates.

Questions use FastChat's ``question.jsonl`` format, one JSON object per line::

    {"question_id": 7, "category": "math", "turns": ["Solve 3x + 7 = 22."], "reference": ["x = 5"]}

Only the first turn is asked: refinement rewrites one answer to one request, and a later turn
would be conditioned on an answer that differs per model and per round count, so its grade
would no longer compare like with like. Later turns are read and ignored.

A question's task is ``tasks_map[category]`` when the map names the category, else the category
itself when the policy declares such a task, else the policy's ``default_task``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class QuestionsError(ValueError):
    """A questions or tasks-map file that cannot be used; the message names file and line."""


@dataclass(frozen=True, slots=True)
class Question:
    question_id: str
    category: str
    prompt: str
    reference: str | None
    task: str


class _QuestionLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    question_id: int | str
    category: str = Field(min_length=1)
    turns: list[str] = Field(min_length=1)
    reference: list[str] | None = None


def default_questions_path() -> Path:
    """The question set shipped with perfics (package data)."""
    return Path(str(resources.files("proxy.calibrate") / "data" / "questions.jsonl"))


def load_questions(
    path: str | Path, *, tasks: Sequence[str], default_task: str, tasks_map: Mapping[str, str]
) -> list[Question]:
    """Read a question file and assign each question its task. Raises ``QuestionsError`` on a
    malformed line, a duplicate id, or a mapped task the policy does not declare."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QuestionsError(f"{path}: {exc.strerror}") from exc
    questions: list[Question] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed = _QuestionLine.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            raise QuestionsError(f"{path}:{number}: {_first_error(exc)}") from exc
        question_id = str(parsed.question_id)
        if question_id in seen:
            raise QuestionsError(f"{path}:{number}: duplicate question_id {question_id}")
        seen.add(question_id)
        task = task_for(parsed.category, tasks=tasks, default_task=default_task, mapping=tasks_map)
        if task not in tasks:
            raise QuestionsError(
                f"{path}:{number}: category {parsed.category!r} maps to task {task!r}, "
                f"which the policy does not declare"
            )
        reference = "\n".join(parsed.reference) if parsed.reference else None
        questions.append(
            Question(question_id, parsed.category, parsed.turns[0], reference or None, task)
        )
    if not questions:
        raise QuestionsError(f"{path}: no questions")
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
    """The first ``per_task`` questions of each task, in file order (all when ``None``)."""
    if per_task is None:
        return list(questions)
    counts: dict[str, int] = {}
    kept: list[Question] = []
    for question in questions:
        if counts.get(question.task, 0) < per_task:
            counts[question.task] = counts.get(question.task, 0) + 1
            kept.append(question)
    return kept


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return f"not JSON: {exc}"
