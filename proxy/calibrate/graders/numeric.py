"""The ``numeric`` grader: the final number an answer states, compared within a tolerance.

Spec: ``{"type": "numeric", "answer": 12.5, "tolerance": 0.01}``. ``tolerance`` is absolute and
defaults to ``1e-6 * max(1, |answer|)``.

The number graded is, in order of preference:

1. the content of the last ``\\boxed{...}`` (LaTeX ``\\frac{a}{b}`` read as ``a/b``);
2. the first number after the last answer marker (``answer is``, ``answer:``, ``answer =``)
   on the last line that has one;
3. the first number after the last ``=`` on the last line that has a number, when that line
   has an ``=`` after which a number follows;
4. the last number in the answer.

So a correction ("... 41. No wait, it is 42") is graded on the number stated last. Numbers may
carry a sign, a ``$``, thousands separators (``1,200``), decimals, a trailing ``%`` (dropped:
``45%`` reads as 45), or be a simple fraction (``1/4`` reads as 0.25). Exponent notation is
not read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from proxy.calibrate.graders.base import STRICT, Verdict, validate_spec

_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−]?)(?:\$\s?)?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?)(?!\d|\.\d))?"
)
_MARKER = re.compile(r"answer\s*(?:is|:|=)", re.IGNORECASE)
_BOXED = "\\boxed{"
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")


class _NumericSpec(BaseModel):
    model_config = STRICT

    type: Literal["numeric"]
    answer: float = Field(allow_inf_nan=False)
    tolerance: float | None = Field(default=None, ge=0, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class NumericGrader:
    answer: float
    tolerance: float

    @property
    def kind(self) -> str:
        return "numeric"

    def check(self, answer: str) -> Verdict:
        found = final_number(answer)
        if found is None:
            return Verdict(False, "no number in the answer")
        if abs(found - self.answer) <= self.tolerance:
            return Verdict(True, f"found {_show(found)}")
        return Verdict(False, f"expected {_show(self.answer)}, found {_show(found)}")


def build(spec: Mapping[str, Any]) -> NumericGrader:
    """A ``NumericGrader`` from its spec; ``GraderError`` names a bad field."""
    parsed = validate_spec(_NumericSpec, spec, path="grader")
    tolerance = parsed.tolerance
    if tolerance is None:
        tolerance = 1e-6 * max(1.0, abs(parsed.answer))
    return NumericGrader(answer=parsed.answer, tolerance=tolerance)


def final_number(text: str) -> float | None:
    """The number ``text`` states as its answer (see the module docstring), or ``None``."""
    boxed = _last_boxed(text)
    if boxed is not None and (numbers := _numbers(_untex(boxed))):
        return numbers[0]
    text = _untex(text)
    lines = text.splitlines()
    for line in reversed(lines):
        markers = list(_MARKER.finditer(line))
        if markers and (numbers := _numbers(line[markers[-1].end() :])):
            return numbers[0]
    for line in reversed(lines):
        if numbers := _numbers(line):
            _, equals, after = line.rpartition("=")
            if equals and (after_numbers := _numbers(after)):
                return after_numbers[0]
            return numbers[-1]
    return None


def _numbers(text: str) -> list[float]:
    values = []
    for match in _NUMBER.finditer(text):
        value = float(match["int"].replace(",", ""))
        denominator = match["den"]
        if denominator is not None and float(denominator) != 0:
            value /= float(denominator)
        values.append(-value if match["sign"] in ("-", "−") else value)
    return values


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}``, braces matched, or ``None``."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[begin:index]
    return None


def _untex(text: str) -> str:
    """LaTeX number spellings made plain: fractions as ``a/b``, ``{,}`` as ``,``, ``\\$`` and
    ``\\%`` unescaped."""
    text = _LATEX_FRACTION.sub(r"\1/\2", text)
    return text.replace("{,}", ",").replace("\\$", "$").replace("\\%", "%").replace("\\!", "")


def _show(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".12g") if math.isfinite(value) else str(value)
