"""The refinement loop against a scripted backend: the exact prompts of each round, the stop
phrase, the budget stop, tool calls, JSON rewrites, live streaming of the last rewrite."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.backends.base import Completion, SamplingParams, Usage
from proxy.backends.scripted import ScriptedBackend
from proxy.refine import (
    AnswerDelta,
    Event,
    Finished,
    Refined,
    RefinementPrompts,
    RoundStarted,
    Started,
    is_stop_phrase,
    refine,
)

PROMPTS = RefinementPrompts(
    critique="Critique your answer. If nothing needs fixing reply exactly {stop_phrase}.",
    rewrite="Write the improved answer.",
    stop_phrase="NO ISSUES",
    critique_max_tokens=32,
)
PROMPTS_ALL = dataclasses.replace(PROMPTS, accept="all")
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def always(*_: Any) -> bool:
    return True


async def run(
    backend: ScriptedBackend, rounds: int, *, live: bool = False, **kw: Any
) -> tuple[Refined, list[Event]]:
    events: list[Event] = []
    params = kw.pop("params", SamplingParams(temperature=0.0, max_tokens=50))
    within = kw.pop("within_budget", always)
    stream: AsyncIterator[Event] = refine(
        backend,
        CONVERSATION,
        params,
        rounds=rounds,
        prompts=kw.pop("prompts", PROMPTS),
        within_budget=within,
        live=live,
    )
    async for event in stream:
        events.append(event)
    last = events[-1]
    assert isinstance(last, Finished)
    return last.result, events


async def test_two_rounds_send_the_exact_prompts_on_one_growing_prefix() -> None:
    backend = ScriptedBackend("m", ["draft", "too short", "better", "still vague", "best"])
    result, events = await run(backend, rounds=2)

    assert (result.text, result.rounds, result.stop_reason) == ("best", 2, "max_rounds")
    critique_1, rewrite_1, critique_2, rewrite_2 = (c.messages for c in backend.calls[1:])
    critique_text = "Critique your answer. If nothing needs fixing reply exactly NO ISSUES."
    assert critique_1 == (
        *CONVERSATION,
        {"role": "assistant", "content": "draft"},
        {"role": "user", "content": critique_text},
    )
    assert rewrite_1 == (
        *critique_1,
        {"role": "assistant", "content": "too short"},
        {"role": "user", "content": "Write the improved answer."},
    )
    # Round 2 reviews the round-1 rewrite against the original conversation.
    assert critique_2 == (
        *CONVERSATION,
        {"role": "assistant", "content": "better"},
        {"role": "user", "content": critique_text},
    )
    assert rewrite_2[-2:] == (
        {"role": "assistant", "content": "still vague"},
        {"role": "user", "content": "Write the improved answer."},
    )
    # Critiques are capped at critique_max_tokens and never constrained to JSON or tools.
    assert backend.calls[1].params.max_tokens == 32
    assert backend.calls[2].params.max_tokens == 50
    assert [e.round for e in events if isinstance(e, RoundStarted)] == [1, 2]
    assert [t.critique for t in result.trace] == ["too short", "still vague"]
    assert [t.rewrite for t in result.trace] == ["better", "best"]


async def test_usage_is_summed_over_every_call() -> None:
    replies = [Completion(t, "stop", Usage(10 * i, i)) for i, t in enumerate(["a", "b", "c"], 1)]
    backend = ScriptedBackend("m", replies)
    result, _ = await run(backend, rounds=1)
    assert result.usage == Usage(10 + 20 + 30, 1 + 2 + 3)
    assert result.trace[0].critique_usage == Usage(20, 2)
    assert result.trace[0].rewrite_usage == Usage(30, 3)


@pytest.mark.parametrize(
    "critique",
    [
        "NO ISSUES",
        "no issues",
        "  No Issues.  ",
        "**NO ISSUES**",
        "NO ISSUES!",
        "'no  issues'",
        "No issues\n",
    ],
)
async def test_stop_phrase_variants_end_refinement(critique: str) -> None:
    backend = ScriptedBackend("m", ["draft", critique])
    result, _ = await run(backend, rounds=2)
    assert (result.text, result.rounds, result.stop_reason) == ("draft", 0, "no_issues")
    assert len(backend.calls) == 2


@pytest.mark.parametrize(
    "critique",
    [
        "NO ISSUES, but the tone could be warmer.",
        "There are no issues with X; fix Y.",
        "",
        "ISSUES",
    ],
)
def test_text_that_merely_mentions_the_phrase_is_not_a_stop(critique: str) -> None:
    assert not is_stop_phrase(critique, "NO ISSUES")


async def test_stop_phrase_in_a_later_round_keeps_the_rewrite() -> None:
    backend = ScriptedBackend("m", ["draft", "fix it", "fixed", "No issues."])
    result, _ = await run(backend, rounds=3)
    assert (result.text, result.rounds, result.stop_reason) == ("fixed", 1, "no_issues")


async def test_budget_stop_before_a_round_that_would_not_fit() -> None:
    seen: list[tuple[Usage, int, int]] = []

    def one_round_only(usage: Usage, prompt_tokens: int, answer_tokens: int) -> bool:
        seen.append((usage, prompt_tokens, answer_tokens))
        return len(seen) == 1

    backend = ScriptedBackend(
        "m",
        [
            Completion("draft", "stop", Usage(7, 3)),
            Completion("issue", "stop", Usage(20, 2)),
            Completion("rewrite!", "stop", Usage(25, 4)),
        ],
    )
    result, _ = await run(backend, rounds=2, within_budget=one_round_only)
    assert (result.text, result.rounds, result.stop_reason) == ("rewrite!", 1, "budget")
    # The check sees the cost so far, the draft's prompt and the current answer's length.
    assert seen == [(Usage(7, 3), 7, 3), (Usage(52, 9), 7, 4)]


async def test_tool_call_draft_is_not_refined() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    backend = ScriptedBackend("m", [Completion("", "tool_calls", Usage(5, 5), (call,))])
    result, _ = await run(backend, rounds=2)
    assert (result.rounds, result.stop_reason, result.tool_calls) == (0, "not_refinable", (call,))
    assert len(backend.calls) == 1


async def test_json_rewrite_that_does_not_parse_is_discarded() -> None:
    backend = ScriptedBackend(
        "m", ['{"a": 1}', "add b", '{"a": 1, "b":', "add b", '{"a": 1, "b": 2}']
    )
    params = SamplingParams(response_format={"type": "json_object"})
    result, _ = await run(backend, rounds=2, params=params)
    assert result.text == '{"a": 1, "b": 2}'
    assert [t.kept for t in result.trace] == [False, True]
    assert result.rounds == 2
    # Critiques are free text even when the answer must be JSON.
    assert backend.calls[1].params.response_format is None


async def test_json_answer_kept_when_every_rewrite_breaks() -> None:
    backend = ScriptedBackend("m", ['{"ok": true}', "hmm", "not json"])
    result, _ = await run(
        backend, rounds=1, params=SamplingParams(response_format={"type": "json_object"})
    )
    assert result.text == '{"ok": true}'
    assert not result.streamed


async def test_live_mode_streams_only_the_last_planned_rewrite_under_the_all_rule() -> None:
    backend = ScriptedBackend(
        "m", ["draft answer", "issue", "middle answer", "issue", "final answer here"]
    )
    result, events = await run(backend, rounds=2, live=True, prompts=PROMPTS_ALL)
    deltas = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert deltas == "final answer here" == result.text
    assert result.streamed
    assert isinstance(events[0], Started)
    # Hidden calls are whole completions; the draft and the last rewrite stream.
    assert [c.streamed for c in backend.calls] == [True, False, False, False, True]


async def test_live_mode_holds_the_last_rewrite_until_the_rule_accepts_it() -> None:
    # Every rule but ``all`` judges the whole rewrite, so nothing of it may leave first: the
    # caller replays the accepted text.
    backend = ScriptedBackend(
        "m", ["draft answer", "issue", "middle answer", "issue", "final answer here"]
    )
    result, events = await run(backend, rounds=2, live=True)
    assert not any(isinstance(e, AnswerDelta) for e in events)
    assert result.text == "final answer here" and not result.streamed
    assert [c.streamed for c in backend.calls] == [True, False, False, False, False]


async def test_live_mode_with_no_rounds_streams_the_draft() -> None:
    backend = ScriptedBackend("m", ["just the draft"])
    result, events = await run(backend, rounds=0, live=True)
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "just the draft"
    assert result.streamed and result.stop_reason == "max_rounds"


async def test_live_mode_answer_accepted_on_stop_phrase_is_not_marked_streamed() -> None:
    backend = ScriptedBackend("m", ["draft", "NO ISSUES"])
    result, events = await run(backend, rounds=2, live=True)
    assert not any(isinstance(e, AnswerDelta) for e in events)
    assert not result.streamed and result.text == "draft"


async def test_round_that_no_longer_fits_keeps_the_answer_in_hand() -> None:
    from proxy.errors import UpstreamRejected

    too_long = UpstreamRejected("the prompt is 2100 tokens; m holds 2048", param="messages")
    backend = ScriptedBackend("m", ["draft", "fix it", "better", too_long])
    result, _ = await run(backend, rounds=2)
    assert (result.text, result.rounds, result.stop_reason) == ("better", 1, "budget")
    backend = ScriptedBackend("m", ["draft", "fix it", too_long])
    result, _ = await run(backend, rounds=2)
    assert (result.text, result.rounds, result.stop_reason) == ("draft", 0, "budget")
    assert result.trace[0].critique == "fix it" and result.trace[0].rewrite is None


async def test_rewrite_that_repeats_the_critique_or_is_empty_is_discarded() -> None:
    critique = "The answer has several issues:\n1. It is too short.\n2. It does not rhyme."
    echo = "The answer has several issues:\n1. It is too short.\n2. It does not rhyme at all."
    backend = ScriptedBackend("m", ["a poem", critique, echo, "still short", "   "])
    result, _ = await run(backend, rounds=2)
    assert result.text == "a poem"
    assert [t.kept for t in result.trace] == [False, False]
    assert result.rounds == 2 and result.stop_reason == "max_rounds"


async def test_a_genuine_rewrite_that_quotes_part_of_the_critique_is_kept() -> None:
    critique = "It does not rhyme."
    rewrite = "The sea at night is deep and wide,\nit sings to me with every tide."
    backend = ScriptedBackend("m", ["a poem", critique, rewrite])
    result, _ = await run(backend, rounds=1)
    assert result.text == rewrite and result.trace[0].kept


async def test_live_rewrite_that_repeats_the_critique_is_not_streamed() -> None:
    critique = "The previous answer contains several issues: it is too short and it does not rhyme."
    backend = ScriptedBackend("m", ["a poem", critique, critique + " Also the tone."])
    result, events = await run(backend, rounds=1, live=True)
    assert not any(isinstance(e, AnswerDelta) for e in events)
    assert result.text == "a poem" and not result.streamed and not result.trace[0].kept


async def test_live_rewrite_under_the_all_rule_streams_piece_by_piece() -> None:
    rewrite = " ".join(f"word{i}" for i in range(60))
    backend = ScriptedBackend("m", ["a poem", "Too short.", rewrite])
    result, events = await run(backend, rounds=1, live=True, prompts=PROMPTS_ALL)
    deltas = [e.text for e in events if isinstance(e, AnswerDelta)]
    assert "".join(deltas) == rewrite and result.streamed
    assert len(deltas) == 60


async def test_critique_calls_carry_neither_tools_nor_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    params = SamplingParams(tools=tools, tool_choice="auto", max_tokens=50)
    backend = ScriptedBackend("m", ["a plain text draft", "NO ISSUES"])
    await run(backend, rounds=1, params=params)
    critique = backend.calls[1].params
    assert critique.tools is None and critique.tool_choice is None
    assert "tool_choice" not in critique.to_openai()
