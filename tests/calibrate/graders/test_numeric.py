"""The numeric grader: which number an answer states, and the tolerance it is held to."""

from __future__ import annotations

import pytest

from proxy.calibrate.graders import GraderError, parse_grader
from proxy.calibrate.graders.numeric import final_number


def numeric(answer: float, tolerance: float | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"type": "numeric", "answer": answer}
    if tolerance is not None:
        spec["tolerance"] = tolerance
    return spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("The answer is 42.", 42),
        ("So she has **42** apples.", 42),
        ("It costs $1,200 in total.", 1200),
        ("Total: $4.50", 4.5),
        ("The discount is 45%.", 45),
        ("Each gets 1/4 of the cake.", 0.25),
        ("The answer is 1/4.", 0.25),
        ("x = -3", -3),
        ("It takes 3.75 hours.", 3.75),
        ("Roughly 1,234,567.5 people", 1234567.5),
        ("The result is \\boxed{17}.", 17),
        ("$\\boxed{\\frac{3}{4}}$", 0.75),
        ("\\boxed{1{,}200}", 1200),
        ("First I got 41. Wait, I mis-added: the total is 42.", 42),
        ("The answer is 41.\nCorrection: the answer is 42.", 42),
        ("5 + 3 = 8, and 8 - 2 = 6 apples", 6),
        ("- 5 apples\n- 6 pears\nSo 11 pieces in all.", 11),
        ("The answer is 42 (about 40 once rounded).", 42),
        ("\\boxed{7} is what I get, though 8 was tempting.", 7),
        ("−5 degrees", -5),
    ],
)
def test_final_number(text: str, expected: float) -> None:
    assert final_number(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "no digits here", "e.g. one or two"])
def test_no_number(text: str) -> None:
    assert final_number(text) is None


@pytest.mark.parametrize(
    "answer",
    [
        "42",
        "The answer is 42.",
        "Adding them up: 40 + 2 = 42",
        "I first thought 41, but recounting gives 42.",
        "Final answer: **42**",
        "$$\\boxed{42}$$",
        "42.0",
    ],
)
def test_right_answers_pass(answer: str) -> None:
    verdict = parse_grader(numeric(42)).check(answer)  # type: ignore[union-attr]
    assert verdict.passed, verdict.detail
    assert verdict.detail == "found 42"
    assert verdict.score == 10.0


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        ("41", "41"),
        ("I get 42. No wait, it is 43.", "43"),
        ("The answer is 40 (42 before rounding).", "40"),
        ("\\boxed{41}, not 42", "41"),
        ("42 - 1 = 41", "41"),
        ("It is 4.2", "4.2"),
        ("-42", "-42"),
    ],
)
def test_wrong_answers_fail_and_say_what_was_found(answer: str, found: str) -> None:
    verdict = parse_grader(numeric(42)).check(answer)  # type: ignore[union-attr]
    assert not verdict.passed
    assert verdict.detail == f"expected 42, found {found}"
    assert verdict.score == 0.0


def test_no_number_fails() -> None:
    verdict = parse_grader(numeric(3)).check("I cannot tell.")  # type: ignore[union-attr]
    assert (verdict.passed, verdict.detail) == (False, "no number in the answer")


def test_explicit_tolerance_is_absolute() -> None:
    grader = parse_grader(numeric(0.333, tolerance=0.001))
    assert grader is not None
    assert grader.check("about 1/3").passed
    assert grader.check("0.3335").passed
    assert not grader.check("0.33").passed


def test_default_tolerance_is_relative_to_the_answer() -> None:
    small, large = parse_grader(numeric(0.1)), parse_grader(numeric(2_000_000))
    assert small is not None
    assert large is not None
    assert small.check("0.1000001").passed
    assert not small.check("0.10001").passed
    assert large.check("2,000,001").passed  # within 1e-6 * 2e6 = 2
    assert not large.check("2,000,003").passed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "numeric"}, "grader.answer: Field required"),
        ({"type": "numeric", "answer": "12"}, "grader.answer: Input should be a valid number"),
        ({"type": "numeric", "answer": True}, "grader.answer: Input should be a valid number"),
        ({"type": "numeric", "answer": 1, "tolerance": -1}, "grader.tolerance: "),
        ({"type": "numeric", "answer": float("nan")}, "grader.answer: "),
        ({"type": "numeric", "answer": 1, "reference": 2}, "grader.reference: Extra inputs"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(GraderError) as raised:
        parse_grader(spec)
    assert str(raised.value).startswith(message)
