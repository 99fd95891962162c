"""The exact grader: accepted and rejected phrases matched as whole words after normalising."""

from __future__ import annotations

import pytest

from proxy.calibrate.graders import Grader, GraderError, parse_grader
from proxy.calibrate.graders.exact import normalise


def exact(accepted: list[str], rejected: list[str] | None = None) -> Grader:
    spec: dict[str, object] = {"type": "exact", "accepted": accepted}
    if rejected is not None:
        spec["rejected"] = rejected
    grader = parse_grader(spec)
    assert grader is not None
    assert grader.kind == "exact"
    return grader


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  The   Capital, is PARIS! ", "the capital is paris"),
        ("São Paulo", "sao paulo"),
        ("Zürich", "zurich"),
        ("1,000 people", "1000 people"),
        ("pi is 3.14.", "pi is 3.14"),
        ("Jean-Paul O'Brien", "jean paul o brien"),
        ("Straße", "strasse"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    "answer",
    ["Paris", "paris.", "The capital of France is **Paris**!", "PARIS", "It's Paris, of course."],
)
def test_accepted_phrase_passes(answer: str) -> None:
    verdict = exact(["Paris"], ["Lyon"]).check(answer)
    assert verdict.passed, verdict.detail
    assert verdict.detail == "found 'paris'"


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        ("Marseille", "no accepted answer found"),
        ("Lyon", "rejected answer 'lyon' found"),
        ("Parisian food is great", "no accepted answer found"),
        ("Comparison", "no accepted answer found"),
        ("Paris or Lyon", "rejected answer 'lyon' found"),
        ("", "empty answer"),
        ("  ?! ", "empty answer"),
    ],
)
def test_wrong_or_hedged_answers_fail(answer: str, detail: str) -> None:
    verdict = exact(["Paris"], ["Lyon"]).check(answer)
    assert (verdict.passed, verdict.detail) == (False, detail)


def test_any_accepted_phrase_passes_and_accents_and_case_are_ignored() -> None:
    grader = exact(["São Paulo", "Sao Paulo city"])
    assert grader.check("It is SAO PAULO.").passed
    assert not grader.check("It is Paulo.").passed


def test_multiword_phrase_must_appear_whole() -> None:
    grader = exact(["George Washington"])
    assert grader.check("george   washington was first").passed
    assert not grader.check("George W. Bush").passed
    assert not grader.check("Washington, George").passed


def test_numbers_match_with_separators_and_exact_decimals() -> None:
    thousand, pi = exact(["1000"]), exact(["3.14"])
    assert thousand.check("About 1,000 people came.").passed
    assert not thousand.check("About 10,000 people came.").passed
    assert pi.check("Pi is roughly 3.14.").passed
    assert not pi.check("Pi is roughly 3.1415.").passed
    assert not pi.check("Pi is roughly 3 14.").passed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "exact"}, "grader.accepted: Field required"),
        ({"type": "exact", "accepted": []}, "grader.accepted: List should have at least 1"),
        ({"type": "exact", "accepted": "Paris"}, "grader.accepted: Input should be a valid list"),
        ({"type": "exact", "accepted": ["Paris", 3]}, "grader.accepted[1]: Input should be"),
        ({"type": "exact", "accepted": ["Paris"], "rejected": ["!"]}, "grader.rejected[0]: '!'"),
        ({"type": "exact", "accepted": ["x"], "case": True}, "grader.case: Extra inputs"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(GraderError) as raised:
        parse_grader(spec)
    assert str(raised.value).startswith(message)
