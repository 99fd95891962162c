"""Selection among samples, the other way a plan spends a request's extra compute
(docs/architecture.md, "Selection"): ``best_of`` keeps the answer the request's own checks
accept, ``vote`` the answer most samples agree on. Both start from the draft, made as any
answer is, and add ``samples - 1`` more at ``selection.temperature``, each with its own seed
(the request's ``seed + i`` when it sent one), in one call where the backend batches them
(``Sampler``).

``best_of``: the draft wins if it passes the checks (``x-perfics-selected-by: checks``), and
then no sample is made; a request that carries no check makes none either (nothing could tell
them apart: ``draft``). Otherwise the samples are made and checked; of those that pass, the
one the model finds likeliest as an answer to the conversation (``likelihood``, on a backend
that scores) or the first (``checks``); when none passes, the draft (``draft``).

``vote`` (self-consistency): answers are grouped by a normal form (``normal_form``: the last
number of an answer that has one, else its whitespace- and case-folded text); the largest
group's first member wins, ties going to the draft's group (``agreement``; ``draft`` when no
two answers agree).

A draft that is a tool call is answered as it is: calls are never selected among. Every call
is charged to the request's budget as it ends, and the samples are made only where the budget
pays for them.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence

from proxy.backends.base import (
    Backend,
    Completion,
    Message,
    Sampler,
    SamplingParams,
    Scorer,
)
from proxy.charges import Charges
from proxy.errors import BackendError
from proxy.events import ChoiceEvent, Finished, Sampled, Started
from proxy.results import CallRecord, Refined
from proxy.selection.checks import RequestChecks
from routing.budget import ModelBudget


async def select(
    backend: Backend,
    messages: Sequence[Message],
    params: SamplingParams,
    *,
    technique: str,
    samples: int,
    checks: RequestChecks,
    temperature: float,
    budget: ModelBudget,
    choice: int = 0,
) -> AsyncIterator[ChoiceEvent]:
    """Make the draft and, where it is worth it, ``samples - 1`` more answers; yield
    ``Started``, ``Sampled`` progress and finally the chosen answer as ``Finished``."""
    run = _Selection(backend, messages, params, budget, choice)
    try:
        started = time.time_ns()
        draft = await backend.complete(messages, params)
        run.charges.charge(draft.usage, "draft", 0, started)
        yield Started(choice)
        yield Sampled(choice, 1, samples)
        if draft.tool_calls or draft.finish_reason == "tool_calls":
            yield run.finished(draft, "draft", stop_reason="not_refinable")
            return
        if technique == "best_of":
            async for event in run.best_of(draft, samples, checks, temperature):
                yield event
        else:
            async for event in run.vote(draft, samples, temperature):
                yield event
    except BackendError as exc:
        # What finished before the failure was paid for (as the refinement loop reports it).
        exc.calls = (*exc.calls, *run.charges.calls)
        raise


class _Selection:
    def __init__(
        self,
        backend: Backend,
        messages: Sequence[Message],
        params: SamplingParams,
        budget: ModelBudget,
        choice: int,
    ) -> None:
        self.backend = backend
        self.messages = messages
        self.params = params
        self.budget = budget
        self.choice = choice
        self.charges = Charges(budget, backend.model_id)
        self.made = 1

    async def best_of(
        self, draft: Completion, samples: int, checks: RequestChecks, temperature: float
    ) -> AsyncIterator[ChoiceEvent]:
        if checks.empty:
            yield self.finished(draft, "draft")
            return
        if (await checks.run(draft)).passed:
            yield self.finished(draft, "checks")
            return
        others = await self.sample(draft, samples - 1, temperature)
        yield Sampled(self.choice, self.made, samples)
        passing = [answer for answer in others if (await checks.run(answer)).passed]
        if not passing:
            yield self.finished(draft, "draft")
        elif len(passing) == 1 or not isinstance(self.backend, Scorer):
            yield self.finished(passing[0], "checks")
        else:
            yield self.finished(await self.likeliest(passing), "likelihood")

    async def vote(
        self, draft: Completion, samples: int, temperature: float
    ) -> AsyncIterator[ChoiceEvent]:
        answers = [draft, *await self.sample(draft, samples - 1, temperature)]
        yield Sampled(self.choice, self.made, samples)
        groups: dict[str, list[Completion]] = {}
        for answer in answers:
            groups.setdefault(normal_form(answer.text), []).append(answer)
        drafts = normal_form(draft.text)
        # The largest group; among equals, the draft's (max keeps the first it meets).
        ordered = [drafts, *(form for form in groups if form != drafts)]
        winner = max(ordered, key=lambda form: len(groups[form]))
        agreed = len(groups[winner]) > 1
        yield self.finished(groups[winner][0], "agreement" if agreed else "draft")

    async def sample(self, draft: Completion, count: int, temperature: float) -> list[Completion]:
        """``count`` answers after the draft, where the budget pays for them (none where it
        does not)."""
        planned = self.params.max_tokens or draft.usage.completion_tokens
        if count < 1 or not self.budget.allows_samples(draft.usage.prompt_tokens, planned, count):
            return []
        seed = self.params.seed + 1 if self.params.seed is not None else None
        params = self.params.replace(temperature=temperature, seed=seed)
        started = time.time_ns()
        backend = self.backend
        if isinstance(backend, Sampler):
            answers = await backend.sample(self.messages, params, count)
        else:
            answers = []
            for i in range(count):
                each = params.replace(seed=seed + i) if seed is not None else params
                answers.append(await backend.complete(self.messages, each))
        for number, answer in enumerate(answers, start=1):
            self.charges.charge(answer.usage, "sample", number, started)
        self.made += len(answers)
        return answers

    async def likeliest(self, answers: Sequence[Completion]) -> Completion:
        """The answer with the highest mean token log-probability given the conversation."""
        assert isinstance(self.backend, Scorer)
        best: tuple[float, int] | None = None
        for index, answer in enumerate(answers):
            started = time.time_ns()
            scored = await self.backend.likelihood(self.messages, answer.text)
            self.charges.charge(scored.usage, "score", index + 1, started)
            if best is None or scored.mean_logprob > best[0]:
                best = (scored.mean_logprob, index)
        assert best is not None
        return answers[best[1]]

    def finished(
        self, answer: Completion, selected_by: str, *, stop_reason: str = "max_rounds"
    ) -> Finished:
        return Finished(
            self.choice,
            Refined(
                text=answer.text,
                finish_reason=answer.finish_reason,
                tool_calls=answer.tool_calls,
                usage=self.charges.usage,
                rounds=0,
                stop_reason=stop_reason,
                trace=(),
                streamed=False,
                logprobs=answer.logprobs,
                calls=tuple(self.charges.calls),
                samples=self.made,
                selected_by=selected_by,
            ),
        )


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normal_form(text: str) -> str:
    """What ``vote`` compares: the last number of an answer that has one (``1,000.50`` and
    ``1000.5`` alike), else the answer with its whitespace collapsed and its case folded."""
    numbers = _NUMBER.findall(text)
    if numbers:
        value = float(numbers[-1].replace(",", ""))
        return f"#{int(value)}" if value.is_integer() else f"#{value}"
    return " ".join(text.split()).casefold()


async def batched_choices(
    backend: Sampler,
    model: str,
    messages: Sequence[Message],
    params: SamplingParams,
    n: int,
    budget: ModelBudget,
) -> AsyncIterator[ChoiceEvent]:
    """A request's ``n`` choices made in one call (one llama.cpp batch sharing the prompt, one
    ``n`` request upstream), each then reported as a finished answer, never refined; each is
    charged to ``budget`` as its usage says (the shared prompt on the first)."""
    started = time.time_ns()
    answers = await backend.sample(messages, params, n)
    elapsed = (time.time_ns() - started) / 1e9
    for index, answer in enumerate(answers):
        cost = budget.charge(answer.usage.prompt_tokens, answer.usage.completion_tokens)
        call = CallRecord("draft", 0, answer.usage, started, elapsed, model, cost)
        yield Started(index)
        yield Finished(
            index,
            Refined(
                text=answer.text,
                finish_reason=answer.finish_reason,
                tool_calls=answer.tool_calls,
                usage=answer.usage,
                rounds=0,
                stop_reason="max_rounds",
                trace=(),
                streamed=False,
                logprobs=answer.logprobs,
                calls=(call,),
            ),
        )
