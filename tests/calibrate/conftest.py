"""Calibration fixtures: the test policy, a question file, and a judge fake that rates an
answer by a table keyed by the answer text."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path

import pytest

from proxy.backends.base import (
    Completion,
    Delta,
    Message,
    SamplingParams,
)
from proxy.calibrate.questions import Question, load_questions
from proxy.results import Usage
from routing.policy import Policy
from routing.policy_loader import load_policy

POLICY = Path(__file__).parent / "policies" / "calibrate.yaml"
ANSWER_START = "[Assistant's answer]\n"
ANSWER_END = "\n[End of assistant's answer]"

QUESTIONS = [
    {"question_id": "g1", "category": "general", "turns": ["Why is the sky blue?"]},
    {"question_id": "g2", "category": "writing", "turns": ["Name a colour.", "Another?"]},
    {"question_id": "m1", "category": "math", "turns": ["2+2?"], "reference": ["4"]},
]


class RatingJudge:
    """A judge ``Backend`` fake. ``replies[answer]`` is the reply for that answer text, or a
    list of replies for successive attempts; other answers get ``default``. ``fail_after``
    raises ``RuntimeError`` on that call number (0-based), to simulate an interruption."""

    def __init__(
        self,
        replies: Mapping[str, str | list[str]],
        *,
        default: str | None = None,
        fail_after: int | None = None,
        model_id: str = "judge",
    ) -> None:
        self.model_id = model_id
        self.serial = False
        self.replies = {k: list(v) if isinstance(v, list) else [v] for k, v in replies.items()}
        self.default = default
        self.fail_after = fail_after
        self.graded: list[str] = []

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        if self.fail_after is not None and len(self.graded) >= self.fail_after:
            raise RuntimeError("interrupted")
        prompt = str(messages[0]["content"])
        answer = prompt[prompt.index(ANSWER_START) + len(ANSWER_START) : prompt.index(ANSWER_END)]
        self.graded.append(answer)
        queued = self.replies.get(answer)
        if queued:
            reply = queued.pop(0) if len(queued) > 1 else queued[0]
        elif self.default is not None:
            reply = self.default
        else:
            raise AssertionError(f"no rating scripted for {answer!r}")
        return Completion(reply, "stop", Usage(10, 5))

    async def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        completion = await self.complete(messages, params)
        yield Delta(text=completion.text, finish_reason="stop", usage=completion.usage)


@pytest.fixture
def policy() -> Policy:
    return load_policy(POLICY)


@pytest.fixture
def questions(tmp_path: Path, policy: Policy) -> list[Question]:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return load_questions(
        path,
        tasks=list(policy.tasks),
        default_task=policy.default_task,
        tasks_map={"writing": "general"},
    )
