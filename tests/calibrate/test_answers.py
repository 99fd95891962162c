"""The answer after r rounds: the last kept rewrite at or before round r, else the draft."""

from __future__ import annotations

import pytest

from proxy.calibrate.answers import AnswerRecord, RoundRecord
from proxy.calibrate.throughput import CallTiming


def test_answer_after_each_round() -> None:
    record = AnswerRecord(
        "draft",
        (RoundRecord(1, "fix x", "first", True), RoundRecord(2, "fix y", "second", True)),
        "max_rounds",
        2,
    )
    assert [record.answer_after(r) for r in range(3)] == ["draft", "first", "second"]


def test_discarded_rewrite_keeps_the_previous_answer() -> None:
    record = AnswerRecord(
        "draft",
        (RoundRecord(1, "fix", "bad json", False), RoundRecord(2, "fix", "good", True)),
        "max_rounds",
        2,
    )
    assert [record.answer_after(r) for r in range(3)] == ["draft", "draft", "good"]


def test_early_no_issues_stop_repeats_the_last_kept_answer() -> None:
    record = AnswerRecord(
        "draft", (RoundRecord(1, "fix", "first", True), RoundRecord(2, "NO ISSUES", None, True)),
        "no_issues", 3,
    )  # fmt: skip
    assert [record.answer_after(r) for r in range(4)] == ["draft", "first", "first", "first"]
    assert record.covers(5)  # nothing would change with more rounds


def test_no_issues_on_the_first_critique_means_the_draft_everywhere() -> None:
    record = AnswerRecord("draft", (RoundRecord(1, "NO ISSUES", None, True),), "no_issues", 2)
    assert {record.answer_after(r) for r in range(3)} == {"draft"}


def test_more_rounds_than_were_run_is_an_error() -> None:
    record = AnswerRecord("draft", (RoundRecord(1, "fix", "first", True),), "max_rounds", 1)
    assert record.covers(1)
    assert not record.covers(2)
    with pytest.raises(ValueError, match="only 1 rounds"):
        record.answer_after(2)


def test_json_round_trip() -> None:
    record = AnswerRecord(
        "d", (RoundRecord(1, "c", "r", True),), "max_rounds", 1, CallTiming(10, 5, 0.1, 0.5)
    )
    assert AnswerRecord.from_json(record.to_json()) == record
