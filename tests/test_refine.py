"""The refinement loop against a scripted backend: the exact prompts of each round, the stop
phrase, the budget stop, tool calls, JSON rewrites, live streaming of the last rewrite."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.backends.base import Completion, SamplingParams
from proxy.backends.scripted import ScriptedBackend
from proxy.events import AnswerDelta, ChoiceEvent, Finished, RoundStarted, Started
from proxy.refine import RefinementPrompts, is_stop_phrase, refine
from proxy.results import Refined, Usage
from routing.budget import Budget, ModelBudget, no_budget
from routing.cost import Prices

PROMPTS = RefinementPrompts(
    critique="Critique your answer. If nothing needs fixing reply exactly {stop_phrase}.",
    rewrite="Write the improved answer.",
    stop_phrase="NO ISSUES",
    critique_max_tokens=32,
)
PROMPTS_ALL = dataclasses.replace(PROMPTS, accept="all")
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


PRICES = Prices(1.0, 2.0)  # USD per million tokens in and out: 1 token in = 1e-6 USD


def priced(limit_usd: float) -> tuple[Budget, ModelBudget]:
    budget = Budget(limit_usd)
    return budget, budget.for_model(PRICES, critique_tokens=32, template_tokens=10, scoring=False)


async def run(
    backend: ScriptedBackend, rounds: int, *, live: bool = False, **kw: Any
) -> tuple[Refined, list[ChoiceEvent]]:
    events: list[ChoiceEvent] = []
    params = kw.pop("params", SamplingParams(temperature=0.0, max_tokens=50))
    stream: AsyncIterator[ChoiceEvent] = refine(
        backend,
        CONVERSATION,
        params,
        rounds=rounds,
        prompts=kw.pop("prompts", PROMPTS),
        budget=kw.pop("budget", no_budget()),
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
    backend = ScriptedBackend(
        "m",
        [
            Completion("draft", "stop", Usage(7, 3)),
            Completion("issue", "stop", Usage(20, 2)),
            Completion("rewrite!", "stop", Usage(25, 4)),
        ],
    )
    # A round, with p = 7, a = 50 (the cap), k = 32, t = 10: 2p + 2a + k + 2t = 166 in and
    # k + a = 82 out, 166 + 164 = 330 millionths. Draft 7 + 6 = 13 -> round 1: 13 + 330 = 343
    # fits 390. Critique 20 + 4 = 24, rewrite 25 + 8 = 33: spent 70 -> round 2: 70 + 330 = 400
    # does not.
    budget, spending = priced(390e-6)
    result, _ = await run(backend, rounds=2, budget=spending)
    assert (result.text, result.rounds, result.stop_reason) == ("rewrite!", 1, "budget")
    assert budget.spent_usd == pytest.approx(70e-6)
    assert len(backend.calls) == 3


async def test_budget_stop_before_a_rewrite_after_a_long_critique() -> None:
    backend = ScriptedBackend(
        "m", [Completion("draft", "stop", Usage(7, 3)), Completion("issue", "stop", Usage(200, 30))]
    )
    # Round 1 fits (13 + 330 = 343 <= 345). The critique read far more than estimated: 200 in
    # and 30 out cost 260, spent 273; the rewrite would read 200 + 30 + 10 = 240 and write up
    # to 50 (100): 273 + 340 > 345, so it is not started.
    budget, spending = priced(345e-6)
    result, _ = await run(backend, rounds=1, budget=spending)
    assert (result.text, result.rounds, result.stop_reason) == ("draft", 0, "budget")
    assert result.trace[0].critique == "issue"
    assert result.trace[0].rewrite is None
    assert budget.spent_usd == pytest.approx(273e-6)
    assert len(backend.calls) == 2


async def test_under_a_budget_an_upstream_that_ignores_max_tokens_is_cut_off() -> None:
    # Twenty words where five were asked for: the call streams and stops at the cap, and is
    # counted as five tokens on the estimated prompt (the upstream's usage never arrives).
    words = " ".join(f"w{i}" for i in range(20))
    backend = ScriptedBackend("m", [Completion(words, "stop", Usage(9, 20))])
    budget, spending = priced(1.0)
    params = SamplingParams(temperature=0.0, max_tokens=5)
    result, _ = await run(backend, rounds=0, budget=spending, params=params)
    assert result.text == "w0 w1 w2 w3 w4"
    assert result.finish_reason == "length"
    prompt = (len("Be brief.") + 3) // 4 + 4 + (len("Hi?") + 3) // 4 + 4
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (prompt, 5)
    assert budget.spent_usd == pytest.approx((prompt + 2 * 5) / 1e6)
    assert backend.calls[0].streamed


async def test_a_failing_round_reports_what_the_finished_calls_spent() -> None:
    from proxy.errors import BackendError

    backend = ScriptedBackend(
        "m", [Completion("draft", "stop", Usage(7, 3)), BackendError("upstream died")]
    )
    budget, spending = priced(1.0)
    with pytest.raises(BackendError) as caught:
        await run(backend, rounds=1, budget=spending)
    assert caught.value.spent == Usage(7, 3)
    assert budget.spent_usd == pytest.approx(13e-6)


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
    assert result.text == "final answer here"
    assert not result.streamed
    assert [c.streamed for c in backend.calls] == [True, False, False, False, False]


async def test_live_mode_with_no_rounds_streams_the_draft() -> None:
    backend = ScriptedBackend("m", ["just the draft"])
    result, events = await run(backend, rounds=0, live=True)
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "just the draft"
    assert result.streamed
    assert result.stop_reason == "max_rounds"


async def test_live_mode_answer_accepted_on_stop_phrase_is_not_marked_streamed() -> None:
    backend = ScriptedBackend("m", ["draft", "NO ISSUES"])
    result, events = await run(backend, rounds=2, live=True)
    assert not any(isinstance(e, AnswerDelta) for e in events)
    assert not result.streamed
    assert result.text == "draft"


async def test_round_that_no_longer_fits_keeps_the_answer_in_hand() -> None:
    from proxy.errors import UpstreamRejected

    too_long = UpstreamRejected("the prompt is 2100 tokens; m holds 2048", param="messages")
    backend = ScriptedBackend("m", ["draft", "fix it", "better", too_long])
    result, _ = await run(backend, rounds=2)
    assert (result.text, result.rounds, result.stop_reason) == ("better", 1, "budget")
    backend = ScriptedBackend("m", ["draft", "fix it", too_long])
    result, _ = await run(backend, rounds=2)
    assert (result.text, result.rounds, result.stop_reason) == ("draft", 0, "budget")
    assert result.trace[0].critique == "fix it"
    assert result.trace[0].rewrite is None


async def test_rewrite_that_repeats_the_critique_or_is_empty_is_discarded() -> None:
    critique = "The answer has several issues:\n1. It is too short.\n2. It does not rhyme."
    echo = "The answer has several issues:\n1. It is too short.\n2. It does not rhyme at all."
    backend = ScriptedBackend("m", ["a poem", critique, echo, "still short", "   "])
    result, _ = await run(backend, rounds=2)
    assert result.text == "a poem"
    assert [t.kept for t in result.trace] == [False, False]
    assert result.rounds == 2
    assert result.stop_reason == "max_rounds"


async def test_a_genuine_rewrite_that_quotes_part_of_the_critique_is_kept() -> None:
    critique = "It does not rhyme."
    rewrite = "The sea at night is deep and wide,\nit sings to me with every tide."
    backend = ScriptedBackend("m", ["a poem", critique, rewrite])
    result, _ = await run(backend, rounds=1)
    assert result.text == rewrite
    assert result.trace[0].kept


async def test_live_rewrite_that_repeats_the_critique_is_not_streamed() -> None:
    critique = "The previous answer contains several issues: it is too short and it does not rhyme."
    backend = ScriptedBackend("m", ["a poem", critique, critique + " Also the tone."])
    result, events = await run(backend, rounds=1, live=True)
    assert not any(isinstance(e, AnswerDelta) for e in events)
    assert result.text == "a poem"
    assert not result.streamed
    assert not result.trace[0].kept


async def test_live_rewrite_under_the_all_rule_streams_piece_by_piece() -> None:
    rewrite = " ".join(f"word{i}" for i in range(60))
    backend = ScriptedBackend("m", ["a poem", "Too short.", rewrite])
    result, events = await run(backend, rounds=1, live=True, prompts=PROMPTS_ALL)
    deltas = [e.text for e in events if isinstance(e, AnswerDelta)]
    assert "".join(deltas) == rewrite
    assert result.streamed
    assert len(deltas) == 60


async def test_critique_calls_carry_neither_tools_nor_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    params = SamplingParams(tools=tools, tool_choice="auto", max_tokens=50)
    backend = ScriptedBackend("m", ["a plain text draft", "NO ISSUES"])
    await run(backend, rounds=1, params=params)
    critique = backend.calls[1].params
    assert critique.tools is None
    assert critique.tool_choice is None
    assert "tool_choice" not in critique.to_openai()
