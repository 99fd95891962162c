"""Token estimates for planning, per docs/architecture.md ("PeRFICS").

The planner never tokenizes: a message counts ``ceil(chars / 4) + 4`` tokens. For ``r``
refinement rounds (draft ``p`` in, ``a`` out; each round a critique of ``p + a + t`` in and
``k`` out, then a rewrite of ``p + a + k + t`` in and ``a`` out)::

    in(r)  = p + r(2p + 2a + k + 2t)
    out(r) = a + r(k + a)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def estimate_prompt_tokens(messages: Sequence[Mapping[str, object]]) -> int:
    """Sum over messages of ``ceil(len(content) / 4) + 4``. ``content`` may be a string, a list
    of parts (the ``text`` of ``{"type": "text"}`` parts, joined; other parts count 0
    characters) or absent/None (0 characters)."""
    total = 0
    for message in messages:
        chars = _content_chars(message.get("content"))
        total += -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE
    return total


def estimate_json_tokens(value: object) -> int:
    """``ceil(chars / 4)`` of ``value`` as compact JSON: what tool definitions add to a prompt
    when they are offered (a model's own rendering of them differs by a few tokens)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return -(-len(text) // CHARS_PER_TOKEN)


def _content_chars(content: object) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list | tuple):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, Mapping)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]
        return len("".join(texts))
    return 0


def template_tokens(*prompts: str) -> int:
    """``t`` as the estimate counts it: the largest refinement prompt's message
    (``ceil(chars/4) + 4``), plus the 4 of the assistant message it follows (whose content is
    counted as ``a`` or ``k``)."""
    return max(estimate_prompt_tokens([{"content": prompt}]) for prompt in prompts) + (
        TOKENS_PER_MESSAGE
    )


def answer_tokens(max_tokens: int | None, task_answer_tokens: int) -> int:
    """``a``: the client's ``max_tokens`` capped by the task's ``answer_tokens``."""
    if max_tokens is None:
        return task_answer_tokens
    return min(max_tokens, task_answer_tokens)


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """``p`` prompt, ``a`` answer, ``k`` critique (``refinement.critique_max_tokens``) and ``t``
    template tokens (``routing.policy_index``: the larger of ``refinement.template_tokens`` and
    the prompts' own estimate) — the contract's symbols; ``n`` choices, each refined on its own,
    multiply every count."""

    p: int
    a: int
    k: int
    t: int
    n: int = 1

    def input_tokens(self, rounds: int) -> int:
        """``n · in(r)``, ``in(r) = p + r(2p + 2a + k + 2t)``."""
        return self.n * (self.p + rounds * (2 * self.p + 2 * self.a + self.k + 2 * self.t))

    def output_tokens(self, rounds: int) -> int:
        """``n · out(r)``, ``out(r) = a + r(k + a)``."""
        return self.n * (self.a + rounds * (self.k + self.a))
