"""Whether a refinement rewrite replaces the answer in hand: the policy's ``refinement.accept``.

Each rule is the one before it plus one more condition:

- ``all``       any rewrite that is not empty, and that parses when the request asked for
                JSON (``response_format``): the bare critique-and-rewrite loop.
- ``answers``   ``all``, and the rewrite must be an answer rather than talk about one
                (``non_answer``): not an echo of its own critique, no meta talk about the
                previous answer or the review ("Here is the improved answer ...", "the previous
                response ..."), and the same form as the answer it replaces (code stays code,
                JSON stays JSON).
- ``likelier``  ``answers``, and the model itself must find the rewrite a likelier answer to the
                original conversation than the answer in hand: a higher mean token
                log-probability given only the conversation (``Scorer.likelihood``; one prefill
                per new text, the answer in hand's figure is remembered). A backend that cannot
                score text decides as ``answers`` (the review says ``unscored``).

Which rule ships in the default policy is decided by measurement (``docs/refinement.md``).

``Reviewer.review`` gives every rule's verdict on one rewrite, computing only what the policy's
rule needs unless ``record_all`` asks for every verdict (calibration records them all, to
compare the rules on the same rewrites without running the models once per rule).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from proxy.backends.base import Backend, Message, Scorer
from proxy.errors import PerficsError
from proxy.results import NO_USAGE, Review, Rule, Usage

RULES: tuple[Rule, ...] = ("all", "answers", "likelier")


@dataclass(slots=True)
class Reviewer:
    """Reviews the rewrites of one request's refinement under ``rule``. ``conversation`` is
    what the draft answered; log-probabilities are computed against it alone."""

    rule: Rule
    backend: Backend
    conversation: Sequence[Message]
    wants_json: bool
    record_all: bool = False
    _likelihood: dict[str, float] = field(default_factory=dict)

    async def review(self, previous: str, rewrite: str, critique: str) -> Review:
        verdicts: dict[str, bool] = {}
        reason = _invalid(rewrite, self.wants_json)
        verdicts["all"] = reason is None
        if reason is None or self.record_all:
            answer_reason = reason or non_answer(rewrite, previous, critique, self._context())
            verdicts["answers"] = answer_reason is None
        else:
            answer_reason = reason
        if self.rule == "all":
            return Review("all", reason is None, reason, verdicts)
        if self.rule == "answers" and not self.record_all:
            return Review("answers", answer_reason is None, answer_reason, verdicts)
        usage, calls, pair = NO_USAGE, 0, None
        if answer_reason is None:
            usage, calls, pair = await self._compare(previous, rewrite)
        likelier_ok = answer_reason is None and (pair is None or pair[1] > pair[0])
        if "answers" in verdicts:
            verdicts["likelier"] = likelier_ok if pair is not None else verdicts["answers"]
        if self.rule == "answers":
            kept = answer_reason is None
            return Review("answers", kept, answer_reason, verdicts, usage, calls, pair)
        final_reason = answer_reason or (None if likelier_ok else "less_likely")
        return Review("likelier", likelier_ok, final_reason, verdicts, usage, calls, pair)

    async def _compare(
        self, previous: str, rewrite: str
    ) -> tuple[Usage, int, tuple[float, float] | None]:
        if not isinstance(self.backend, Scorer):
            return NO_USAGE, 0, None
        usage, calls = NO_USAGE, 0
        figures: list[float] = []
        for text in (previous, rewrite):
            known = self._likelihood.get(text)
            if known is None:
                try:
                    scored = await self.backend.likelihood(self.conversation, text)
                except PerficsError:
                    return usage, calls, None
                usage, calls = usage + scored.usage, calls + 1
                known = self._likelihood[text] = scored.mean_logprob
            figures.append(known)
        return usage, calls, (figures[0], figures[1])

    def _context(self) -> str:
        return "\n".join(_text(m.get("content")) for m in self.conversation)


def _invalid(rewrite: str, wants_json: bool) -> str | None:
    if not rewrite.strip():
        return "empty"
    if wants_json and not parses_as_json(rewrite):
        return "not_json"
    return None


def non_answer(rewrite: str, previous: str, critique: str, context: str = "") -> str | None:
    """Why ``rewrite`` is not an answer that could replace ``previous``, or None.

    ``echo``: it opens by repeating ``critique``. ``meta``: it talks about an answer, a
    revision or the review in words that neither the conversation (``context``) nor the
    previous answer used. ``lost_code`` / ``lost_json``: the previous answer held a fenced code
    block or was JSON, and the rewrite is not."""
    if not rewrite.strip():
        return "empty"
    if echoes(rewrite, critique):
        return "echo"
    seen = f"{context}\n{previous}"
    if any(p.search(rewrite) and not p.search(seen) for p in _META):
        return "meta"
    if _FENCE.search(previous) and not _FENCE.search(rewrite):
        return "lost_code"
    if parses_as_json(previous) and not parses_as_json(rewrite):
        return "lost_json"
    return None


def echoes(rewrite: str, critique: str) -> bool:
    """True when the rewrite opens by repeating the critique (the first ``_ECHO_PREFIX``
    characters, ``difflib`` ratio at least ``_ECHO_RATIO``): small models often answer the
    rewrite prompt by restating the problems they listed."""
    opening = rewrite.strip()[:_ECHO_PREFIX]
    matcher = difflib.SequenceMatcher(
        None, opening, critique.strip()[:_ECHO_PREFIX], autojunk=False
    )
    return matcher.ratio() >= _ECHO_RATIO


def parses_as_json(text: str) -> bool:
    """The text, stripped and without one surrounding code fence, is a JSON value."""
    body = text.strip()
    fenced = _WHOLE_FENCE.fullmatch(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body or body[0] not in '[{"-0123456789tfn':
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


_ECHO_PREFIX = 80
_ECHO_RATIO = 0.8
_FENCE = re.compile(r"^\s*```", re.MULTILINE)
_WHOLE_FENCE = re.compile(r"```[\w-]*\n(.*)\n```", re.DOTALL)

_ANSWER_WORDS = r"(?:answer|response|reply|version|text|draft|solution|code|poem|story|essay)"
# Talk about the answer instead of the answer: phrases seen in small models' rewrites
# (tests/fixtures/rewrites.jsonl holds real ones).
_META = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        rf"\b(?:previous|original|earlier|initial|above|first|old|given) {_ANSWER_WORDS}\b",
        rf"\b(?:improved|revised|rewritten|updated|corrected|refined|edited|modified|"
        rf"reorgani[sz]ed|new|better|enhanced|polished) {_ANSWER_WORDS}\b",
        r"\b(?:the|my|your|this|that) (?:critique|review|feedback|criticism)\b",
        r"\bhere(?:'s| is) (?:a|an|the|my|your)\b[^.\n]{0,40}?\b(?:rewrite|rewritten|revision|"
        r"revised|improved|updated|corrected)\b",
        r"\b(?:i|we) (?:have |'ve )?(?:revised|rewritten|rewrote|corrected|improved|updated|"
        r"reorgani[sz]ed|fixed|addressed|incorporated|made (?:the )?changes)\b",
        r"\bno (?:previous |further )?(?:improvements?|changes) (?:have been|were|are)\b",
        r"\bhas been (?:corrected|revised|improved|rewritten|reorgani[sz]ed|updated)\b",
        r"\b(?:issues|problems|errors|mistakes) (?:you |i )?(?:listed|identified|mentioned|"
        r"pointed out|noted)\b",
        r"\b(?:complete|final|full|improved)(?: and \w+)? answer (?:to|for) (?:the|this|your) "
        r"(?:conversation|question|request)\b",
        # an assistant's greeting instead of an answer
        r"\bI'?m (?:ready|here|happy|glad) to help\b",
        r"\b(?:what|how) can I (?:help|assist) you\b",
        r"\bplease (?:go ahead and )?ask (?:your|a|me)\b",
    )
)
