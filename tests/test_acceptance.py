"""The acceptance rules (``proxy.acceptance``) on real rewrites recorded from the bundled
SmolLM2 (tests/fixtures/rewrites.jsonl), and the ``likelier`` rule with a scripted scorer."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from proxy.acceptance import Reviewer, non_answer, parses_as_json
from proxy.backends.base import Likelihood, Message, Scorer
from proxy.backends.scripted import ScriptedBackend
from proxy.results import Usage

FIXTURES = [
    json.loads(line)
    for line in (Path(__file__).parent / "fixtures" / "rewrites.jsonl").read_text().splitlines()
]


@pytest.mark.parametrize("case", FIXTURES, ids=[f["source"].split(", ")[-1] for f in FIXTURES])
def test_recorded_rewrites(case: dict[str, Any]) -> None:
    reason = non_answer(case["rewrite"], case["previous"], case["critique"])
    assert reason == case["expected"], case["rewrite"][:200]


def test_the_fixtures_cover_every_kind_of_non_answer() -> None:
    kinds = {case["expected"] for case in FIXTURES}
    assert {"meta", "echo", "lost_code", None} <= kinds


@pytest.mark.parametrize(
    ("rewrite", "previous", "reason"),
    [
        ("Here is the improved answer:\n\nParis.", "Paris is the capital.", "meta"),
        ("The previous response was too short. Paris.", "Paris.", "meta"),
        ("I have revised the answer as requested.", "Paris.", "meta"),
        ("What can I help you with today?", "Paris.", "meta"),
        ("def f(): pass", "```python\ndef f():\n    return 1\n```", "lost_code"),
        ("name: Ada", '{"name": "Ada"}', "lost_json"),
        ("   ", "Paris.", "empty"),
        ("Paris is the capital of France.", "Lyon.", None),
        ('```json\n{"name": "Ada", "age": 36}\n```', '{"name": "Ada"}', None),
    ],
)
def test_non_answers(rewrite: str, previous: str, reason: str | None) -> None:
    assert non_answer(rewrite, previous, "It is too short.") == reason


def test_words_the_conversation_used_are_not_meta_talk() -> None:
    # A question about drafts and reviews may be answered in those words.
    question = "How do I improve the previous version of my essay after the review?"
    answer = "Read the previous version aloud, then act on the review's main point."
    assert non_answer(answer, "Start over.", "Too vague.", question) is None
    assert non_answer(answer, "Start over.", "Too vague.") == "meta"


def test_parses_as_json_allows_one_fence() -> None:
    assert parses_as_json('{"a": 1}')
    assert parses_as_json("```json\n[1, 2]\n```")
    assert not parses_as_json("not json")
    assert not parses_as_json("")


class Scoring(ScriptedBackend):
    """A scripted backend that also scores answers from a table."""

    def __init__(self, table: Mapping[str, float]) -> None:
        super().__init__("m")
        self.table = dict(table)
        self.scored: list[str] = []

    async def likelihood(self, messages: Sequence[Message], answer: str) -> Likelihood:
        self.scored.append(answer)
        return Likelihood(self.table[answer], 3, Usage(10, 0, 10))


CONVERSATION = [{"role": "user", "content": "Capital of France?"}]


async def test_likelier_keeps_only_what_the_model_prefers() -> None:
    backend = Scoring({"Paris.": -0.5, "Lyon.": -2.0, "It is Paris.": -0.3})
    assert isinstance(backend, Scorer)
    reviewer = Reviewer("likelier", backend, CONVERSATION, wants_json=False)
    worse = await reviewer.review("Paris.", "Lyon.", "Be specific.")
    assert (worse.kept, worse.reason, worse.likelihoods) == (False, "less_likely", (-0.5, -2.0))
    assert worse.calls == 2
    assert worse.usage == Usage(20, 0, 20)
    better = await reviewer.review("Paris.", "It is Paris.", "Be specific.")
    assert better.kept
    assert better.calls == 1  # the answer in hand was scored already
    assert backend.scored == ["Paris.", "Lyon.", "It is Paris."]
    meta = await reviewer.review("Paris.", "Here is the improved answer: Paris.", "x")
    assert (meta.kept, meta.reason, meta.calls) == (False, "meta", 0)  # not scored at all


async def test_verdicts_of_every_rule_are_recorded_for_calibration() -> None:
    backend = Scoring({"Paris.": -0.5, "Lyon.": -2.0})
    reviewer = Reviewer("answers", backend, CONVERSATION, wants_json=False, record_all=True)
    review = await reviewer.review("Paris.", "Lyon.", "Be specific.")
    assert review.kept  # the policy's rule, answers, keeps it
    assert review.verdicts == {"all": True, "answers": True, "likelier": False}
    echo = await reviewer.review("Paris.", "Be specific about it.", "Be specific about it.")
    assert echo.verdicts == {"all": True, "answers": False, "likelier": False}


async def test_a_backend_that_cannot_score_decides_as_answers() -> None:
    reviewer = Reviewer("likelier", ScriptedBackend("m"), CONVERSATION, wants_json=False)
    review = await reviewer.review("Paris.", "Lyon.", "Be specific.")
    assert review.kept
    assert review.likelihoods is None
    assert review.calls == 0


async def test_the_all_rule_keeps_anything_but_empty_or_broken_json() -> None:
    reviewer = Reviewer("all", ScriptedBackend("m"), CONVERSATION, wants_json=True)
    assert not (await reviewer.review("{}", "Here is the improved answer", "x")).kept
    assert (await reviewer.review("{}", '{"a": 1}', "x")).kept
    plain = Reviewer("all", ScriptedBackend("m"), CONVERSATION, wants_json=False)
    assert (await plain.review("Paris.", "Here is the improved answer", "x")).kept
