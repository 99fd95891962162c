"""Verifiable graders: answers checked by rule or by running code, instead of by a judge model.

A question line may carry a ``"grader"`` object; ``parse_grader`` turns it into a ``Grader``
whose ``check(answer)`` returns a ``Verdict`` (passed or not, a short reason, and a score of 10
or 0 on the judge's scale). The types, one module each:

- ``numeric``: the final number stated, within a tolerance (``numeric.py``);
- ``exact``: an accepted phrase and no rejected one, after normalisation (``exact.py``);
- ``constraints``: IFEval-style format checks, all of which must hold (``constraints.py``);
- ``python_tests``: the answer's code run against unit tests in a sandbox
  (``python_tests.py``, ``sandbox.py``);
- ``judge``: no rule; the judge model grades the answer (``parse_grader`` returns ``None``).

Errors: ``GraderError`` (a ``ValueError``) for a spec that cannot be used, its message naming
the field (``grader.answer: ...``). Checking an answer never raises for what the answer says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel

from proxy.calibrate.graders import constraints, exact, numeric, python_tests
from proxy.calibrate.graders.base import STRICT, Grader, GraderError, Verdict, validate_spec

__all__ = ["GRADER_TYPES", "Grader", "GraderError", "Verdict", "parse_grader"]


class _JudgeSpec(BaseModel):
    model_config = STRICT

    type: Literal["judge"]


def _judge(spec: Mapping[str, Any]) -> None:
    validate_spec(_JudgeSpec, spec, path="grader")


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Grader | None]] = {
    "python_tests": python_tests.build,
    "numeric": numeric.build,
    "exact": exact.build,
    "constraints": constraints.build,
    "judge": _judge,
}

GRADER_TYPES: tuple[str, ...] = tuple(_BUILDERS)
"""Every value a grader's ``type`` may take."""


def parse_grader(spec: Mapping[str, Any]) -> Grader | None:
    """The grader a question line's ``"grader"`` object describes, or ``None`` for
    ``{"type": "judge"}``. Raises ``GraderError``, naming the field, for a spec that is not an
    object, an unknown type, a missing, unknown or invalid field, or an unknown constraint
    check."""
    if not isinstance(spec, Mapping):
        raise GraderError(f"grader: must be an object, not {type(spec).__name__}")
    kind = spec.get("type")
    if not isinstance(kind, str):
        raise GraderError("grader.type: missing or not a string")
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise GraderError(f"grader.type: unknown type {kind!r}; known: {', '.join(GRADER_TYPES)}")
    return builder(spec)
