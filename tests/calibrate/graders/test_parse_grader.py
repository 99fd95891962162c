"""The grader registry: one builder per type, ``judge`` means no grader, errors name fields."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.calibrate.graders import GRADER_TYPES, GraderError, Verdict, parse_grader

SPECS: dict[str, dict[str, Any]] = {
    "python_tests": {
        "type": "python_tests",
        "tests": "def check(f):\n    assert f() == 1\n",
        "entry_point": "f",
    },
    "numeric": {"type": "numeric", "answer": 1},
    "exact": {"type": "exact", "accepted": ["one"]},
    "constraints": {"type": "constraints", "checks": [{"check": "max_words", "value": 1}]},
}


def test_types_are_the_registry() -> None:
    assert GRADER_TYPES == ("python_tests", "numeric", "exact", "constraints", "judge")
    assert set(SPECS) == set(GRADER_TYPES) - {"judge"}


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_each_type_builds_a_grader_of_its_kind(kind: str) -> None:
    grader = parse_grader(SPECS[kind])
    assert grader is not None
    assert grader.kind == kind


def test_judge_means_no_verifiable_grader() -> None:
    assert parse_grader({"type": "judge"}) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "grader.type: missing or not a string"),
        ({"type": 3}, "grader.type: missing or not a string"),
        ({"type": "regex"}, "grader.type: unknown type 'regex'; known: python_tests, numeric"),
        ({"type": "judge", "model": "x"}, "grader.model: Extra inputs are not permitted"),
        (["numeric"], "grader: must be an object, not list"),
    ],
)
def test_bad_specs(spec: Any, message: str) -> None:
    with pytest.raises(GraderError) as raised:
        parse_grader(spec)
    assert str(raised.value).startswith(message)
    assert isinstance(raised.value, ValueError)


def test_verdict_score_is_on_the_judge_scale() -> None:
    assert Verdict(True, "ok").score == 10.0
    assert Verdict(False, "no").score == 0.0
