"""The ``constraints`` grader: instruction-following checks in the style of IFEval.

Spec: ``{"type": "constraints", "checks": [{"check": "max_words", "value": 50}, ...]}``. An answer
passes when every check passes; the detail lists the failed ones (``"max_words: 63 > 50"``).

The counts the checks use, all pure Python:

- a *word* is a whitespace-separated token with at least one letter or digit;
- a *sentence* is a non-empty piece (one with a letter or digit) of the text split after ``.``,
  ``!`` or ``?`` runs followed by whitespace or the end (so "e.g. this" counts two);
- a *line* is a line with something other than whitespace on it;
- *paragraphs* are the non-empty pieces between runs of blank lines;
- a *bullet* is a line starting, after optional spaces, with ``- `` or ``* ``;
- a *numbered item* is a line starting, after optional spaces, with digits, ``.`` and a space;
- a *placeholder* is a square-bracketed span like ``[name]`` (not a markdown link's text);
- a phrase *occurs* when it appears case-insensitively with no letter, digit or ``_`` touching
  either end, any whitespace inside it matching any whitespace;
- ``max_chars`` counts characters of the answer with surrounding whitespace stripped.

The check kinds (``CHECKS``) and their fields:

- ``value``: ``min_words``, ``max_words``, ``min_sentences``, ``max_sentences``, ``min_lines``,
  ``max_lines``, ``exact_lines``, ``paragraphs`` (exactly), ``bullets`` (exactly),
  ``min_bullets``, ``numbered_items`` (exactly), ``placeholders`` (at least), ``max_chars``;
- none: ``lowercase`` / ``uppercase`` (no letter of the other case, and at least one letter),
  ``no_commas``, ``title`` (a ``<<title>>``), ``quoted`` (wrapped in double quotes);
- ``words``: ``include_words`` (each occurs), ``exclude_words`` (none occurs);
- ``word`` with ``min``, ``max`` or both: ``keyword_frequency``;
- optional ``keys``: ``json`` (the answer, optionally in one code fence, parses as JSON; with
  ``keys``, an object with those top-level keys);
- ``text``: ``starts_with``, ``ends_with`` (case-sensitive; surrounding whitespace ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, model_validator

from proxy.calibrate.graders import text_checks
from proxy.calibrate.graders.base import STRICT, GraderError, Verdict, validate_spec

_Spec = TypeVar("_Spec", bound=BaseModel)
_Phrase = Annotated[str, Field(pattern=r"\S")]
Failure = str | None
"""What a check returns: ``None`` when the answer passes, else the reason it fails."""


class _Bare(BaseModel):
    model_config = STRICT
    check: str


class _Count(_Bare):
    value: int = Field(ge=0)


class _Words(_Bare):
    words: list[_Phrase] = Field(min_length=1)


class _Frequency(_Bare):
    word: _Phrase
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounded(self) -> _Frequency:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self


class _Json(_Bare):
    keys: list[str] | None = None


class _Affix(_Bare):
    text: str = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class _Kind(Generic[_Spec]):
    """A check kind: the fields its spec has and the function that runs it."""

    spec: type[_Spec]
    run: Callable[[str, _Spec], Failure]


def _at_least(count: Callable[[str], int]) -> _Kind[_Count]:
    def run(text: str, spec: _Count) -> Failure:
        found = count(text)
        return None if found >= spec.value else f"{found} < {spec.value}"

    return _Kind(_Count, run)


def _at_most(count: Callable[[str], int]) -> _Kind[_Count]:
    def run(text: str, spec: _Count) -> Failure:
        found = count(text)
        return None if found <= spec.value else f"{found} > {spec.value}"

    return _Kind(_Count, run)


def _exactly(count: Callable[[str], int]) -> _Kind[_Count]:
    def run(text: str, spec: _Count) -> Failure:
        found = count(text)
        return None if found == spec.value else f"{found} instead of {spec.value}"

    return _Kind(_Count, run)


def _holds(predicate: Callable[[str], Failure]) -> _Kind[_Bare]:
    return _Kind(_Bare, lambda text, _spec: predicate(text))


def _include_words(text: str, spec: _Words) -> Failure:
    missing = [word for word in spec.words if not text_checks.occurrences(text, word)]
    return f"missing {_listed(missing)}" if missing else None


def _exclude_words(text: str, spec: _Words) -> Failure:
    found = [word for word in spec.words if text_checks.occurrences(text, word)]
    return f"contains {_listed(found)}" if found else None


def _keyword_frequency(text: str, spec: _Frequency) -> Failure:
    found = text_checks.occurrences(text, spec.word)
    if spec.min is not None and found < spec.min:
        return f"{spec.word!r} {found} times < {spec.min}"
    if spec.max is not None and found > spec.max:
        return f"{spec.word!r} {found} times > {spec.max}"
    return None


def _json(text: str, spec: _Json) -> Failure:
    return text_checks.json_failure(text, spec.keys)


def _starts_with(text: str, spec: _Affix) -> Failure:
    return None if text.strip().startswith(spec.text.strip()) else f"not {spec.text.strip()!r}"


def _ends_with(text: str, spec: _Affix) -> Failure:
    return None if text.strip().endswith(spec.text.strip()) else f"not {spec.text.strip()!r}"


CHECKS: dict[str, _Kind[Any]] = {
    "min_words": _at_least(text_checks.count_words),
    "max_words": _at_most(text_checks.count_words),
    "min_sentences": _at_least(text_checks.count_sentences),
    "max_sentences": _at_most(text_checks.count_sentences),
    "min_lines": _at_least(text_checks.count_lines),
    "max_lines": _at_most(text_checks.count_lines),
    "exact_lines": _exactly(text_checks.count_lines),
    "paragraphs": _exactly(text_checks.count_paragraphs),
    "lowercase": _holds(text_checks.lowercase_failure),
    "uppercase": _holds(text_checks.uppercase_failure),
    "include_words": _Kind(_Words, _include_words),
    "exclude_words": _Kind(_Words, _exclude_words),
    "keyword_frequency": _Kind(_Frequency, _keyword_frequency),
    "json": _Kind(_Json, _json),
    "bullets": _exactly(text_checks.count_bullets),
    "min_bullets": _at_least(text_checks.count_bullets),
    "starts_with": _Kind(_Affix, _starts_with),
    "ends_with": _Kind(_Affix, _ends_with),
    "no_commas": _holds(text_checks.comma_failure),
    "title": _holds(text_checks.title_failure),
    "quoted": _holds(text_checks.quoted_failure),
    "max_chars": _at_most(lambda text: len(text.strip())),
    "numbered_items": _exactly(text_checks.count_numbered_items),
    "placeholders": _at_least(text_checks.count_placeholders),
}
"""Every check kind by name: its spec fields and the function that runs it."""


@dataclass(frozen=True, slots=True)
class _Check:
    name: str
    rule: _Kind[Any]
    spec: BaseModel

    def failure(self, text: str) -> Failure:
        reason = self.rule.run(text, self.spec)
        return None if reason is None else f"{self.name}: {reason}"


class _ConstraintsSpec(BaseModel):
    model_config = STRICT

    type: Literal["constraints"]
    checks: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ConstraintsGrader:
    checks: tuple[_Check, ...]

    @property
    def kind(self) -> str:
        return "constraints"

    def check(self, answer: str) -> Verdict:
        failures = [reason for check in self.checks if (reason := check.failure(answer))]
        if failures:
            return Verdict(False, "; ".join(failures))
        return Verdict(True, f"all {len(self.checks)} checks passed")


def build(spec: Mapping[str, Any]) -> ConstraintsGrader:
    """A ``ConstraintsGrader`` from its spec; ``GraderError`` names a bad field or an unknown
    check, e.g. ``grader.checks[2].check: unknown check 'foo'; known: ...``."""
    parsed = validate_spec(_ConstraintsSpec, spec, path="grader")
    return ConstraintsGrader(tuple(parse_checks(parsed.checks)))


def parse_checks(specs: Sequence[Mapping[str, Any]]) -> list[_Check]:
    """Each check spec validated against its kind's fields; ``GraderError`` names the first
    bad one by its index."""
    checks = []
    for index, spec in enumerate(specs):
        path = f"grader.checks[{index}]"
        name = spec.get("check")
        if not isinstance(name, str):
            raise GraderError(f"{path}.check: missing or not a string")
        kind = CHECKS.get(name)
        if kind is None:
            raise GraderError(f"{path}.check: unknown check {name!r}; known: {', '.join(CHECKS)}")
        checks.append(_Check(name, kind, validate_spec(kind.spec, spec, path=path)))
    return checks


def _listed(words: Sequence[str]) -> str:
    return ", ".join(repr(word) for word in words)
