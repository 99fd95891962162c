"""Single-answer grading by a judge model, on a 1–10 scale.

The judge sees the question, the reference answer when the question has one, and the answer
to grade; it writes a short rationale and ends with the rating in double brackets, ``[[7]]``
or ``[[6.5]]``. The rating is parsed strictly: exactly one distinct ``[[N]]`` value with
1 <= N <= 10. A reply without one is answered with a reminder of the format in the same
conversation, up to ``retries`` more times; after that the grade is a failure (``score`` is
``None``, ``error`` says why) and is counted and reported, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.backends.base import Backend, Message, SamplingParams

RUBRIC_VERSION = "1"

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")

_INSTRUCTIONS = (
    "You are an impartial grader. Rate how well the assistant's answer below serves the "
    "user's question: correctness first, then helpfulness, relevance, completeness and "
    "clarity. Length is not a merit."
)
_WITH_REFERENCE = (
    " A reference answer is included: check the assistant's answer against it, and treat "
    "any contradiction of the reference as a serious fault."
)
_FORMAT = (
    "\n\nFirst explain your judgement in at most three sentences. Then, on the last line, "
    "give a score from 1 (useless) to 10 (excellent) inside double square brackets, "
    "for example: Rating: [[5]]"
)
REMINDER = (
    "Your reply did not end with the score in the required format. Reply with one line "
    "only: Rating: [[N]], where N is your score from 1 to 10."
)


@dataclass(frozen=True, slots=True)
class Grade:
    """One judged answer. ``score`` is ``None`` when every attempt failed to parse."""

    score: float | None
    replies: tuple[str, ...]
    error: str | None = None

    @property
    def attempts(self) -> int:
        return len(self.replies)


def judge_prompt(question: str, answer: str, reference: str | None) -> str:
    """The grading request for one answer (the whole user turn sent to the judge)."""
    parts = [_INSTRUCTIONS + (_WITH_REFERENCE if reference else "") + _FORMAT]
    parts.append(f"[Question]\n{question}\n[End of question]")
    if reference:
        parts.append(f"[Reference answer]\n{reference}\n[End of reference answer]")
    parts.append(f"[Assistant's answer]\n{answer}\n[End of assistant's answer]")
    return "\n\n".join(parts)


def parse_rating(reply: str) -> float | None:
    """The rating in ``reply``: its one distinct ``[[N]]`` value within 1..10, else ``None``."""
    values = {float(match) for match in _RATING.findall(reply)}
    if len(values) != 1:
        return None
    value = values.pop()
    return value if 1.0 <= value <= 10.0 else None


async def grade(
    judge: Backend,
    question: str,
    answer: str,
    reference: str | None,
    params: SamplingParams,
    *,
    retries: int = 2,
) -> Grade:
    """Ask ``judge`` to grade ``answer``; backend errors propagate to the caller."""
    messages: list[Message] = [
        {"role": "user", "content": judge_prompt(question, answer, reference)}
    ]
    replies: list[str] = []
    for _ in range(retries + 1):
        reply = (await judge.complete(messages, params)).text
        replies.append(reply)
        score = parse_rating(reply)
        if score is not None:
            return Grade(score, tuple(replies))
        messages = [
            *messages,
            {"role": "assistant", "content": reply},
            {"role": "user", "content": REMINDER},
        ]
    return Grade(None, tuple(replies), f"no [[N]] rating in {len(replies)} replies")
