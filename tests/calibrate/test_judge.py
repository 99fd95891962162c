"""Judge prompts and strict rating parsing; retries with a reminder, then a counted failure."""

from __future__ import annotations

import pytest

from proxy.backends.base import SamplingParams
from proxy.backends.scripted import ScriptedBackend
from proxy.calibrate.judge import REMINDER, grade, judge_prompt, parse_rating

PARAMS = SamplingParams(max_tokens=64, temperature=0.0, seed=0)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Clear and correct. Rating: [[8]]", 8.0),
        ("Rating: [[6.5]]", 6.5),
        ("[[ 10 ]]", 10.0),
        ("Rating: [[1]]", 1.0),
        ("first [[7]] and again [[7]]", 7.0),
        ("Rating: 8", None),
        ("Rating: [8]", None),
        ("Rating: [[0]]", None),
        ("Rating: [[11]]", None),
        ("Rating: [[7/10]]", None),
        ("Rating: [[N]]", None),
        ("[[3]] or maybe [[9]]", None),
        ("", None),
    ],
)
def test_parse_rating_is_strict(reply: str, expected: float | None) -> None:
    assert parse_rating(reply) == expected


def test_prompt_includes_reference_only_when_given() -> None:
    with_ref = judge_prompt("What is 2+2?", "5", "4")
    without = judge_prompt("Write a haiku.", "leaves fall", None)
    assert "[Reference answer]\n4\n" in with_ref
    assert "reference" in with_ref.lower()
    assert "Reference" not in without
    for prompt in (with_ref, without):
        assert "[[" in prompt
        assert "1" in prompt
        assert "10" in prompt


async def test_unparseable_reply_is_retried_with_a_reminder() -> None:
    judge = ScriptedBackend("judge", ["Looks fine to me.", "Rating: [[7]]"])
    result = await grade(judge, "Q?", "A.", None, PARAMS)
    assert result.score == 7.0
    assert result.attempts == 2
    retry = judge.calls[1].messages
    assert retry[-2] == {"role": "assistant", "content": "Looks fine to me."}
    assert retry[-1] == {"role": "user", "content": REMINDER}


async def test_three_bad_replies_make_a_failure_not_a_score() -> None:
    judge = ScriptedBackend("judge", ["good", "very good", "8/10"])
    result = await grade(judge, "Q?", "A.", None, PARAMS)
    assert result.score is None
    assert result.attempts == 3
    assert result.error is not None
    assert "3 replies" in result.error
    assert len(judge.calls) == 3


async def test_judge_sampling_is_passed_through() -> None:
    judge = ScriptedBackend("judge", ["[[4]]"])
    await grade(judge, "Q?", "A.", "ref", PARAMS)
    assert judge.calls[0].params == PARAMS
    assert judge.calls[0].messages[0]["role"] == "user"
