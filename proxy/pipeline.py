"""The request pipeline: decide, answer on the chosen model, fall back along the plan when a
model fails before the client saw any of its answer, and account for every call.

    decision = decision_for(runtime, facts)     # routing.decision, errors translated
    outcome = await run(runtime, decision, job)    # a non-streaming request
    async for event in stream(runtime, decision, job): ...   # a streaming one

``facts`` (``routing.decision.RequestFacts``) and the ``Job`` (``proxy.job``) come from the
endpoint's own parser; nothing here knows a wire format.

``run`` and ``stream`` walk the same attempts (``_Attempts``): the plan's models in order, one
``Budget`` across all of them and all choices, what a failed model spent counted. A choice is
one call of ``proxy.refine.refine``; the choices of a request run side by side on a backend
that serves calls concurrently (not the embedded one, which serialises them anyway) unless a
budget applies, where running them one after another keeps the ceiling exact. Nothing here
knows about HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import structlog

from proxy.backends.base import Backend, RawText, Sampler
from proxy.errors import BackendError, from_routing_error
from proxy.events import ChoiceEvent, Committed, Done, Event, Finished, Started
from proxy.job import Job
from proxy.refine import refine
from proxy.results import CallRecord, Outcome, Refined, Spent, Usage
from proxy.runtime import Runtime
from proxy.selection.checks import RequestChecks
from proxy.selection.select import batched_choices, select
from routing.budget import Budget, ModelBudget
from routing.cost import cost_usd
from routing.decision import Decision, KeyScope, RequestFacts
from routing.decision import decide as decide_plan
from routing.errors import RoutingError
from routing.planner import Candidate
from routing.policy_index import index_of

log = structlog.get_logger(__name__)


def decision_for(runtime: Runtime, facts: RequestFacts, scope: KeyScope | None = None) -> Decision:
    """``routing.decision.decide`` for a request's ``facts`` on the models ready now, within
    the caller's key's ``scope``."""
    try:
        return decide_plan(runtime.policy, facts, ready=runtime.ready_models(), scope=scope)
    except RoutingError as exc:
        raise from_routing_error(exc) from exc


async def run(runtime: Runtime, decision: Decision, job: Job) -> Outcome:
    """Serve a non-streaming request to the end."""
    attempts = _Attempts(runtime, decision, job)
    for candidate in attempts:
        finished: list[Refined] = []  # choices answered before another failed: paid for
        try:
            results = await _answers(attempts, candidate, finished)
        except BackendError as exc:
            attempts.failed(candidate, exc, finished)
            continue
        return attempts.outcome(candidate, results)
    raise AssertionError("unreachable: the last attempt's failure is raised")


async def stream(runtime: Runtime, decision: Decision, job: Job) -> AsyncGenerator[Event, None]:
    """Serve a streaming request: ``Committed`` first (the answering model, after any that
    failed before it produced anything), then the choices' events, then ``Done``."""
    attempts = _Attempts(runtime, decision, job)
    for candidate in attempts:
        committed = False
        results: list[Refined] = []
        try:
            async for event in _choice_events(attempts, candidate, live=True):
                if isinstance(event, Started):
                    if not committed:
                        committed = True
                        yield Committed(candidate.model, tuple(attempts.fallbacks))
                    continue
                if isinstance(event, Finished):
                    results.append(event.result)
                yield event
        except BackendError as exc:
            # Once the headers named this model, another may not answer under them.
            attempts.failed(candidate, exc, results, fall_back=not committed)
            continue
        yield Done(attempts.outcome(candidate, results))
        return


@dataclass(slots=True)
class _Attempts:
    """The plan's models in fallback order, and what the request has spent across them."""

    runtime: Runtime
    decision: Decision
    job: Job
    budget: Budget = field(init=False)
    failed_calls: list[CallRecord] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    _order: tuple[Candidate, ...] = ()

    def __post_init__(self) -> None:
        self.budget = Budget(self.decision.declarations.budget_usd)
        self._order = self.decision.plan.attempts()

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._order)

    def spending(self, candidate: Candidate) -> ModelBudget:
        index = index_of(self.runtime.policy)
        return self.budget.for_model(
            index.prices[candidate.model],
            critique_tokens=index.critique_tokens,
            template_tokens=index.template_tokens,
            scoring=self.runtime.prompts.accept == "likelier",
        )

    def failed(
        self,
        candidate: Candidate,
        exc: BackendError,
        finished: Sequence[Refined] = (),
        *,
        fall_back: bool = True,
    ) -> None:
        """Count what ``candidate`` spent, then re-raise ``exc`` unless the next model may
        answer: the error is retryable, nothing was sent, and a next model exists."""
        self.failed_calls += (*exc.calls, *(call for result in finished for call in result.calls))
        position = self._order.index(candidate)
        if not (fall_back and exc.retryable and position + 1 < len(self._order)):
            exc.request = self.spent(self.failed_calls)
            raise exc
        self.fallbacks.append(candidate.model)
        log.warning(
            "route.fallback",
            model=candidate.model,
            next=self._order[position + 1].model,
            error=type(exc).__name__,
        )

    def outcome(self, candidate: Candidate, results: Sequence[Refined]) -> Outcome:
        """What the request answered, and every call it made, the failed models' included."""
        spent = self.spent(
            [*self.failed_calls, *(call for result in results for call in result.calls)]
        )
        usage = spent.usage
        reference = self.runtime.reference_prices
        return Outcome(
            model=candidate.model,
            rounds_planned=candidate.rounds,
            choices=tuple(results),
            spent=spent,
            fallbacks=tuple(self.fallbacks),
            reference_cost_usd=(
                cost_usd(reference, usage.prompt_tokens, usage.completion_tokens)
                if reference is not None
                else None
            ),
            latency_ms=round((time.perf_counter() - self.started) * 1000),
        )

    def spent(self, calls: Sequence[CallRecord]) -> Spent:
        """``calls``' tokens, and the cost as the budget charged it (each call at the price of
        the model that made it)."""
        usage = Usage()
        for call in calls:
            usage = usage + call.usage
        return Spent(usage, self.budget.spent_usd, tuple(calls))


async def _answers(
    attempts: _Attempts, candidate: Candidate, finished: list[Refined]
) -> list[Refined]:
    """Every choice's final answer on ``candidate``, in choice order; each also goes into
    ``finished`` as it comes."""
    results: dict[int, Refined] = {}
    async for event in _choice_events(attempts, candidate, live=False):
        if isinstance(event, Finished):
            results[event.choice] = event.result
            finished.append(event.result)
    return [results[i] for i in sorted(results)]


def _choice_events(
    attempts: _Attempts, candidate: Candidate, *, live: bool
) -> AsyncIterator[ChoiceEvent]:
    runtime, job, decision = attempts.runtime, attempts.job, attempts.decision
    backend: Backend = runtime.backends[candidate.model]
    if job.raw:
        backend = RawText(backend)
    spending = attempts.spending(candidate)
    base = job.sampling(offer_tools=candidate.offers_tools)
    base = base.with_defaults(index_of(runtime.policy).models[candidate.model].defaults.given())
    if spending.applies:
        # A declared budget is a ceiling: each answer is held to the planned length, or less
        # when what is left would not pay for it.
        cap = spending.answer_cap(decision.prompt_tokens, decision.plan.estimate.a)
        base = base.replace(max_tokens=min(cap, base.max_tokens or cap))
    messages = job.messages
    if candidate.technique in ("best_of", "vote"):
        selection = runtime.policy.selection
        checks = RequestChecks.build(
            messages, base, code=selection.checks, time_limit_s=selection.time_limit_s
        )
        return select(
            backend,
            messages,
            base,
            technique=candidate.technique,
            samples=candidate.samples,
            checks=checks,
            temperature=selection.temperature,
            budget=spending,
        )
    if (
        job.n > 1
        and candidate.rounds == 0
        and not live
        and not spending.applies
        and base.tools is None
        and isinstance(backend, Sampler)
    ):
        # Choices that are drafts: made together, sharing the prompt.
        return batched_choices(backend, candidate.model, messages, base, job.n, spending)
    choices = [
        refine(
            backend,
            messages,
            base.replace(seed=base.seed + i) if i and base.seed is not None else base,
            rounds=candidate.rounds,
            prompts=runtime.prompts,
            budget=spending,
            live=live,
            choice=i,
            refinable=not job.raw,
        )
        for i in range(job.n)
    ]
    if len(choices) == 1 or spending.applies or backend.serial:
        return _one_after_another(choices)
    return _side_by_side(choices)


async def _one_after_another(
    streams: list[AsyncIterator[ChoiceEvent]],
) -> AsyncIterator[ChoiceEvent]:
    for events in streams:
        async for event in events:
            yield event


_END = object()


async def _side_by_side(streams: list[AsyncIterator[ChoiceEvent]]) -> AsyncIterator[ChoiceEvent]:
    """The events of every stream as they come (choices interleave as OpenAI's do). The first
    error ends them all."""
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump(events: AsyncIterator[ChoiceEvent]) -> None:
        try:
            async for event in events:
                await queue.put(event)
        except Exception as exc:
            await queue.put(exc)
        finally:
            await queue.put(_END)

    tasks = [asyncio.create_task(pump(events)) for events in streams]
    try:
        ended = 0
        while ended < len(tasks):
            item = await queue.get()
            if item is _END:
                ended += 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield cast(ChoiceEvent, item)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _usage(results: Sequence[Refined]) -> Usage:
    usage = Usage()
    for result in results:
        usage = usage + result.usage
    return usage
