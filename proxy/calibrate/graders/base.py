"""What every grader shares: the verdict it returns, the contract it meets, and how its spec is
validated.

A grader is built once from a question's ``"grader"`` object and then checks any number of
answers. Building raises ``GraderError`` for a spec that cannot be used; checking never raises
for anything the answer contains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

SpecModel = TypeVar("SpecModel", bound=BaseModel)

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
"""The model config of every spec: unknown keys and loosely typed values are errors."""


class GraderError(ValueError):
    """A grader spec that cannot be used; the message names the field and what is wrong."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One checked answer. ``detail`` is a short reason a person can read, such as
    ``"expected 42, found 41"`` or ``"max_words: 63 > 50"``."""

    passed: bool
    detail: str

    @property
    def score(self) -> float:
        """The verdict on the judge's 0–10 scale: 10.0 when passed, else 0.0."""
        return 10.0 if self.passed else 0.0


class Grader(Protocol):
    """Checks answers against one question's verifiable spec."""

    @property
    def kind(self) -> str:
        """The spec's ``type``: ``"numeric"``, ``"exact"``, ``"constraints"`` or
        ``"python_tests"``."""
        ...

    def check(self, answer: str) -> Verdict:
        """Grade one answer. Synchronous; ``python_tests`` blocks on a subprocess for up to its
        timeout, so async callers run it in a thread."""
        ...


def validate_spec(model: type[SpecModel], spec: Mapping[str, Any], *, path: str) -> SpecModel:
    """``spec`` validated as ``model``; on failure a ``GraderError`` whose message starts with
    the offending field's path below ``path``, e.g. ``grader.checks[2].value: ...``."""
    try:
        return model.model_validate(dict(spec))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise GraderError(f"{field_path(path, error['loc'])}: {error['msg']}") from exc


def field_path(path: str, loc: tuple[int | str, ...]) -> str:
    """``path`` extended by a pydantic location: ``("checks", 2, "value")`` after ``grader``
    is ``grader.checks[2].value``."""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
