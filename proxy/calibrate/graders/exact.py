"""The ``exact`` grader: short factual answers matched against accepted phrases.

Spec: ``{"type": "exact", "accepted": ["Paris"], "rejected": ["Lyon"]}``; ``rejected`` is
optional. An answer passes when some accepted phrase occurs in it as a whole word or phrase and
no rejected phrase does (so an answer that lists every option does not pass).

Answer and phrases are compared after the same normalisation: accents stripped (NFKD, combining
marks dropped), case folded, thousands separators inside numbers dropped (``1,000`` is
``1000``), every other punctuation or symbol character replaced by a space except a decimal
point between digits, and whitespace collapsed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from proxy.calibrate.graders.base import STRICT, GraderError, Verdict, validate_spec

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_KEPT_POINT = "\x00"  # a control character: neither punctuation nor whitespace


class _ExactSpec(BaseModel):
    model_config = STRICT

    type: Literal["exact"]
    accepted: list[str] = Field(min_length=1)
    rejected: list[str] = []


@dataclass(frozen=True, slots=True)
class ExactGrader:
    accepted: tuple[str, ...]
    rejected: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "exact"

    def check(self, answer: str) -> Verdict:
        text = normalise(answer)
        if not text:
            return Verdict(False, "empty answer")
        padded = f" {text} "
        for phrase in self.rejected:
            if f" {phrase} " in padded:
                return Verdict(False, f"rejected answer {phrase!r} found")
        for phrase in self.accepted:
            if f" {phrase} " in padded:
                return Verdict(True, f"found {phrase!r}")
        return Verdict(False, "no accepted answer found")


def build(spec: Mapping[str, Any]) -> ExactGrader:
    """An ``ExactGrader`` from its spec; ``GraderError`` names a bad field, including a phrase
    that normalises to nothing (``"?!"``)."""
    parsed = validate_spec(_ExactSpec, spec, path="grader")
    phrases: dict[str, tuple[str, ...]] = {}
    for field, raw in (("accepted", parsed.accepted), ("rejected", parsed.rejected)):
        normalised = []
        for index, phrase in enumerate(raw):
            if not (words := normalise(phrase)):
                raise GraderError(f"grader.{field}[{index}]: {phrase!r} has no words")
            normalised.append(words)
        phrases[field] = tuple(normalised)
    return ExactGrader(accepted=phrases["accepted"], rejected=phrases["rejected"])


def normalise(text: str) -> str:
    """``text`` as the grader compares it (see the module docstring)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in text if not unicodedata.combining(char)).casefold()
    text = _DECIMAL_POINT.sub(_KEPT_POINT, _THOUSANDS.sub("", text))
    text = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return " ".join(text.split()).replace(_KEPT_POINT, ".")
