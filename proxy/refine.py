"""Untargeted self-refinement: draft, then up to N rounds of self-critique and rewrite.

The same model reviews its own previous answer with one domain-agnostic prompt pair from the
policy and rewrites it; nothing from outside (no tests, no retrieval, no other model) enters.
Every critique and rewrite call extends the conversation the draft saw, so a backend with
prefix caching re-reads only the new tail.

    draft       = conversation                                          -> answer
    critique r  = conversation + [assistant answer, user critique]      -> issues or stop phrase
    rewrite r   = ... + [assistant issues, user rewrite]                -> new answer

Rounds stop at the planned count (``max_rounds``), when a critique is the stop phrase
(``no_issues``), or when the next round's estimated cost would exceed what is left of the
budget (``budget``). A tool-call draft is returned as is (``not_refinable``). Each rewrite must
pass the policy's acceptance rule (``refinement.accept``, ``proxy.acceptance``) to replace the
answer in hand; a discarded rewrite leaves the previous answer standing. A round call the
backend refuses (``UpstreamRejected``: in practice, the longer round prompt no longer fits the
model's context) ends refinement with ``budget``, keeping the answer in hand.

``refine`` is an async generator of events so one loop serves both response modes: a
non-streaming caller keeps only ``Finished``; a streaming caller forwards ``AnswerDelta``s and
replays the final text when it was not streamed live. What streams live is the draft when no
round is planned, and the last planned rewrite only under the ``all`` rule: every other rule
judges the whole rewrite, so it is held until accepted and then replayed.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.acceptance import Reviewer
from proxy.backends.base import (
    Backend,
    Completion,
    Delta,
    Message,
    SamplingParams,
)
from proxy.charges import Charges
from proxy.errors import BackendError, UpstreamRejected
from proxy.events import AnswerDelta, ChoiceEvent, Finished, RoundStarted, Started
from proxy.results import Refined, RoundTrace, Rule, StopReason, TokenLogprob, Usage
from routing.budget import ModelBudget
from routing.estimate import estimate_prompt_tokens


@dataclass(frozen=True, slots=True)
class RefinementPrompts:
    critique: str
    rewrite: str
    stop_phrase: str
    critique_max_tokens: int
    accept: Rule = "answers"


async def refine(
    backend: Backend,
    messages: Sequence[Message],
    params: SamplingParams,
    *,
    rounds: int,
    prompts: RefinementPrompts,
    budget: ModelBudget,
    live: bool,
    choice: int = 0,
    record_reviews: bool = False,
    refinable: bool = True,
) -> AsyncIterator[ChoiceEvent]:
    """Draft and refine one answer, yielding progress events and finally ``Finished``.

    Every call is charged to ``budget`` as it ends. When the budget applies, each round must
    fit what is left (``ModelBudget.allows_round``, then ``allows_rewrite`` once the critique
    is known), answers are capped at ``params.max_tokens`` (the planned ``a``), and every call
    streams so that an upstream that ignores ``max_tokens`` is cut off at the cap. A
    ``BackendError`` leaves with ``spent`` and ``calls`` set to the calls that did finish.
    ``record_reviews`` asks the acceptance review for every rule's verdict (calibration).
    ``refinable`` false: the draft is the answer (``not_refinable``), as for raw text."""
    run = _Refinement(backend, messages, params, prompts, budget, record_reviews, choice)
    try:
        async for event in run.events(rounds if refinable else 0, live, refinable):
            yield event
    except BackendError as exc:
        exc.calls = (*exc.calls, *run.charges.calls)
        raise


class _Refinement:
    """One answer's draft and rounds; ``usage`` is every finished call's, as charged."""

    def __init__(
        self,
        backend: Backend,
        messages: Sequence[Message],
        params: SamplingParams,
        prompts: RefinementPrompts,
        budget: ModelBudget,
        record_reviews: bool,
        choice: int,
    ) -> None:
        self.choice = choice
        self.backend = backend
        self.messages = messages
        self.params = params
        self.prompts = prompts
        self.budget = budget
        self.charges = Charges(budget, backend.model_id)
        self.reviewer = Reviewer(
            prompts.accept, backend, messages, _wants_json(params), record_all=record_reviews
        )

    async def events(
        self, rounds: int, live: bool, refinable: bool = True
    ) -> AsyncIterator[ChoiceEvent]:
        params, prompts, budget = self.params, self.prompts, self.budget
        capped = budget.applies
        live_draft = live and rounds == 0 and not _wants_json(params)
        draft = _Call(self.backend, self.choice, capped)
        started = time.time_ns()
        async for event in draft.run(
            self.messages, params, live=live_draft, announce=True, use_stream=live
        ):
            yield event
        answer = draft.completion
        self.charges.charge(answer.usage, "draft", 0, started)
        answer_tokens = answer.usage.completion_tokens
        draft_prompt = answer.usage.prompt_tokens
        planned = params.max_tokens or answer_tokens
        trace: list[RoundTrace] = []
        stop_reason: StopReason = "max_rounds"
        streamed = live_draft

        if not refinable or answer.tool_calls or answer.finish_reason == "tool_calls":
            rounds, stop_reason = 0, "not_refinable"

        for number in range(1, rounds + 1):
            if not budget.allows_round(draft_prompt, max(answer_tokens, planned)):
                stop_reason = "budget"
                break
            yield RoundStarted(self.choice, number, rounds)
            critique_messages = [
                *self.messages,
                {"role": "assistant", "content": answer.text},
                {
                    "role": "user",
                    "content": prompts.critique.format(stop_phrase=prompts.stop_phrase),
                },
            ]
            critique_params = params.replace(
                max_tokens=prompts.critique_max_tokens,
                response_format=None,
                stop=(),
                tools=None,
                tool_choice=None,
                parallel_tool_calls=None,
                logprobs=None,
                top_logprobs=None,
            )
            critique_call = _Call(self.backend, self.choice, capped)
            started = time.time_ns()
            try:
                async for _ in critique_call.run(
                    critique_messages, critique_params, live=False, use_stream=False
                ):
                    pass
            except UpstreamRejected:
                # The longer round prompt no longer fits (the model's context, usually): the
                # answer in hand stands, as when the money budget runs out.
                stop_reason = "budget"
                break
            critique = critique_call.completion
            self.charges.charge(critique.usage, "critique", number, started)
            if is_stop_phrase(critique.text, prompts.stop_phrase):
                trace.append(RoundTrace(number, critique.text, critique.usage))
                stop_reason = "no_issues"
                break
            if not budget.allows_rewrite(
                critique.usage.prompt_tokens, critique.usage.completion_tokens, planned
            ):
                trace.append(RoundTrace(number, critique.text, critique.usage))
                stop_reason = "budget"
                break
            rewrite_messages = [
                *critique_messages,
                {"role": "assistant", "content": critique.text},
                {"role": "user", "content": prompts.rewrite},
            ]
            rewrite_params = params
            if capped:
                reading = critique.usage.prompt_tokens + critique.usage.completion_tokens
                cap = budget.answer_cap(reading + budget.template_tokens, planned)
                rewrite_params = params.replace(max_tokens=cap)
            live_rewrite = (
                live and number == rounds and prompts.accept == "all" and not _wants_json(params)
            )
            call = _Call(self.backend, self.choice, capped)
            started = time.time_ns()
            try:
                async for event in call.run(
                    rewrite_messages, rewrite_params, live=live_rewrite, use_stream=live_rewrite
                ):
                    yield event
            except UpstreamRejected:
                if call.emitted:
                    raise
                trace.append(RoundTrace(number, critique.text, critique.usage))
                stop_reason = "budget"
                break
            rewrite = call.completion
            self.charges.charge(rewrite.usage, "rewrite", number, started)
            started = time.time_ns()
            try:
                review = await self.reviewer.review(answer.text, rewrite.text, critique.text)
            except UpstreamRejected:
                # The rewrite cannot even be scored within the context: it cannot be judged
                # better, and another round would not fit either.
                trace.append(
                    RoundTrace(number, critique.text, critique.usage, rewrite.text, rewrite.usage)
                )
                stop_reason = "budget"
                break
            if review.usage.total_tokens:
                self.charges.charge(review.usage, "review", number, started)
            trace.append(
                RoundTrace(
                    number, critique.text, critique.usage, rewrite.text, rewrite.usage, review
                )
            )
            if review.kept:
                answer, answer_tokens = rewrite, rewrite.usage.completion_tokens
                streamed = call.emitted
        rounds_done = sum(1 for t in trace if t.rewrite is not None)
        yield Finished(
            self.choice,
            Refined(
                text=answer.text,
                finish_reason=answer.finish_reason,
                tool_calls=answer.tool_calls,
                usage=self.charges.usage,
                rounds=rounds_done,
                stop_reason=stop_reason,
                trace=tuple(trace),
                streamed=streamed,
                logprobs=answer.logprobs,
                calls=tuple(self.charges.calls),
            ),
        )


class _Call:
    """One model call, either collected whole or forwarded delta by delta.

    ``capped``: the call streams, and holds the backend to ``params.max_tokens`` itself: a
    piece past the cap ends the stream (closing it stops an upstream's generation), and the
    call is counted as the cap's worth of tokens on the estimated prompt, since the upstream's
    own usage never arrives."""

    completion: Completion
    emitted = False

    def __init__(self, backend: Backend, choice: int, capped: bool = False) -> None:
        self.backend = backend
        self.choice = choice
        self.capped = capped

    async def run(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        *,
        live: bool,
        use_stream: bool,
        announce: bool = False,
    ) -> AsyncIterator[ChoiceEvent]:
        cap = params.max_tokens if self.capped else None
        if not use_stream and cap is None:
            self.completion = await self.backend.complete(messages, params)
            if announce:
                yield Started(self.choice)
            return
        parts: list[str] = []
        tool_calls: list[Mapping[str, Any]] = []
        logprobs: list[TokenLogprob] = []
        finish_reason, usage = "stop", Usage()
        first = True
        pieces = 0
        delta: Delta
        async with contextlib.aclosing(self.backend.stream(messages, params)) as deltas:
            async for delta in deltas:
                if first and announce:
                    yield Started(self.choice)
                first = False
                if delta.text:
                    pieces += 1
                    if cap is not None and pieces > cap:
                        finish_reason = "length"
                        usage = Usage(estimate_prompt_tokens(messages), cap)
                        break
                    parts.append(delta.text)
                    logprobs.extend(delta.logprobs)
                    if live:
                        self.emitted = True
                        yield AnswerDelta(self.choice, delta.text, delta.logprobs)
                tool_calls.extend(delta.tool_calls)
                if delta.finish_reason is not None:
                    finish_reason = delta.finish_reason
                if delta.usage is not None:
                    usage = delta.usage
        if first and announce:
            yield Started(self.choice)
        self.completion = Completion(
            "".join(parts), finish_reason, usage, tuple(tool_calls), tuple(logprobs)
        )


_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_SPACE = re.compile(r"\s+")


def is_stop_phrase(critique: str, stop_phrase: str) -> bool:
    """True when the critique is the stop phrase, ignoring case, whitespace and the
    punctuation or markdown around it ("**No issues.**", " no  issues! ")."""

    def norm(text: str) -> str:
        return _SPACE.sub(" ", _EDGE.sub("", text.strip())).casefold()

    return bool(critique.strip()) and norm(critique) == norm(stop_phrase)


def _wants_json(params: SamplingParams) -> bool:
    fmt = params.response_format
    return fmt is not None and fmt.get("type") in {"json_object", "json_schema"}
