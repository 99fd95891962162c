"""One model's answer to one question: its draft and every refinement round, as cached.

One draft and its rounds give the answers for all round counts 0..R: the answer after ``r``
rounds is the last kept rewrite at or before round ``r``, or the draft when there is none. When
refinement stopped early (the critique found nothing to fix), the rounds that did not run
change nothing, so their answer is the last kept one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.results import Refined

from .throughput import CallTiming

# Stop reasons after which running more rounds would not have changed the answer.
_SETTLED = frozenset({"no_issues", "not_refinable"})


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One round: its critique and rewrite, whether the policy's rule kept the rewrite, the
    verdict every acceptance rule gave it (``proxy.acceptance``), why it was discarded, and the
    scoring calls the review made."""

    round: int
    critique: str
    rewrite: str | None
    kept: bool
    verdicts: dict[str, bool] = field(default_factory=dict)
    reason: str | None = None
    review_calls: int = 0


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    draft: str
    rounds: tuple[RoundRecord, ...]
    stop_reason: str
    rounds_requested: int
    draft_timing: CallTiming | None = None

    def answer_after(self, rounds: int) -> str:
        """The answer a request planned with ``rounds`` rounds would have returned."""
        if rounds > self.rounds_requested and self.stop_reason not in _SETTLED:
            raise ValueError(f"only {self.rounds_requested} rounds were run, not {rounds}")
        answer = self.draft
        for item in self.rounds:
            if item.round > rounds:
                break
            if item.rewrite is not None and item.kept:
                answer = item.rewrite
        return answer

    def covers(self, rounds: int) -> bool:
        """Whether this record answers every round count up to ``rounds``."""
        return self.rounds_requested >= rounds or self.stop_reason in _SETTLED

    @classmethod
    def from_refined(
        cls, result: Refined, draft: str, rounds_requested: int, draft_timing: CallTiming | None
    ) -> AnswerRecord:
        rounds = tuple(
            RoundRecord(
                t.round,
                t.critique,
                t.rewrite,
                t.kept,
                dict(t.review.verdicts) if t.review is not None else {},
                t.review.reason if t.review is not None else None,
                t.review.calls if t.review is not None else 0,
            )
            for t in result.trace
        )
        return cls(draft, rounds, result.stop_reason, rounds_requested, draft_timing)

    def first_round_under(self, rule: str) -> tuple[str, bool | None, int]:
        """The answer after one round had ``rule`` decided the first rewrite, whether it kept
        one (None: no rewrite was made), and the scoring calls that decision needed. Exact:
        the first round's draft, critique and rewrite do not depend on the rule."""
        first = next((r for r in self.rounds if r.round == 1), None)
        if first is None or first.rewrite is None:
            return self.draft, None, 0
        kept = first.verdicts.get(rule, first.kept)
        calls = first.review_calls if rule == "likelier" else 0
        return (first.rewrite if kept else self.draft), kept, calls

    def to_json(self) -> dict[str, Any]:
        return {
            "draft": self.draft,
            "rounds": [
                {
                    "round": r.round,
                    "critique": r.critique,
                    "rewrite": r.rewrite,
                    "kept": r.kept,
                    "verdicts": r.verdicts,
                    "reason": r.reason,
                    "review_calls": r.review_calls,
                }
                for r in self.rounds
            ],
            "stop_reason": self.stop_reason,
            "rounds_requested": self.rounds_requested,
            "draft_timing": self.draft_timing.to_json() if self.draft_timing else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnswerRecord:
        timing = data.get("draft_timing")
        return cls(
            str(data["draft"]),
            tuple(
                RoundRecord(
                    int(r["round"]),
                    str(r["critique"]),
                    r["rewrite"],
                    bool(r["kept"]),
                    dict(r.get("verdicts") or {}),
                    r.get("reason"),
                    int(r.get("review_calls") or 0),
                )
                for r in data["rounds"]
            ),
            str(data["stop_reason"]),
            int(data["rounds_requested"]),
            CallTiming.from_json(timing) if timing else None,
        )
