"""The request pipeline: decide (declarations + plan), generate and refine on the chosen model,
fall back along the plan when a model fails before the client saw any of its answer, and
account for every internal call.

``decide`` is synchronous and cheap. ``run`` serves a non-streaming request; ``events`` serves
a streaming one as a sequence of ``Progress`` / ``AnswerPiece`` / ``Done`` items that the HTTP
layer turns into SSE. Nothing here knows about HTTP.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from proxy.backends.base import Usage
from proxy.errors import BackendError, from_routing_error
from proxy.refine import AnswerDelta, Finished, Refined, RoundStarted, Started, refine
from proxy.runtime import Runtime
from proxy.wire import ChatCompletionRequest
from routing.budget import Budget
from routing.cost import cost_usd, format_usd
from routing.declarations import Declarations, resolve_declarations
from routing.errors import RoutingError
from routing.estimate import estimate_prompt_tokens
from routing.planner import Candidate, Plan, PlanRequest, plan

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    declarations: Declarations
    plan: Plan
    prompt_tokens: int

    def candidate(self, model: str) -> Candidate:
        """The plan's entry for the model that answers (the winner unless it fell back)."""
        attempts = self.plan.attempts()
        return next((c for c in attempts if c.model == model), attempts[0])


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the request cost and produced; the source of every outcome header and the body's
    ``perfics`` object."""

    model: str
    rounds_planned: int
    choices: tuple[Refined, ...]
    usage: Usage
    fallbacks: tuple[str, ...]
    cost_usd: float
    reference_cost_usd: float | None
    latency_ms: int

    @property
    def rounds(self) -> int:
        return self.choices[0].rounds

    @property
    def stop_reason(self) -> str:
        return self.choices[0].stop_reason


@dataclass(frozen=True, slots=True)
class Progress:
    round: int
    of: int
    choice: int


@dataclass(frozen=True, slots=True)
class AnswerPiece:
    choice: int
    text: str


@dataclass(frozen=True, slots=True)
class ChoiceDone:
    choice: int
    result: Refined


@dataclass(frozen=True, slots=True)
class Done:
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Committed:
    """The answering model has begun: ``fallbacks`` failed before it."""

    model: str
    fallbacks: tuple[str, ...]


StreamItem = Committed | Progress | AnswerPiece | ChoiceDone | Done


def decide(
    runtime: Runtime, request: ChatCompletionRequest, headers: Mapping[str, str]
) -> Decision:
    """Resolve what the client declared and plan the model and rounds (pure, no I/O)."""
    policy = runtime.policy
    try:
        declarations = resolve_declarations(
            policy,
            model=request.model,
            headers=headers,
            body=request.perfics,
            last_user_text=request.last_user_text(),
        )
        prompt_tokens = estimate_prompt_tokens(request.backend_messages())
        chosen = plan(
            policy,
            PlanRequest(
                task=declarations.task,
                prompt_tokens=prompt_tokens,
                max_tokens=request.answer_limit,
                choices=request.n,
                budget_usd=declarations.budget_usd,
                max_rounds=declarations.max_rounds,
                pinned_model=declarations.pinned_model,
                ready=runtime.ready_models(),
            ),
        )
    except RoutingError as exc:
        raise from_routing_error(exc) from exc
    return Decision(declarations, chosen, prompt_tokens)


async def run(runtime: Runtime, decision: Decision, request: ChatCompletionRequest) -> Outcome:
    """Serve a non-streaming request to the end."""
    outcome: Outcome | None = None
    async for item in events(runtime, decision, request, live=False):
        if isinstance(item, Done):
            outcome = item.outcome
    assert outcome is not None
    return outcome


async def events(
    runtime: Runtime, decision: Decision, request: ChatCompletionRequest, *, live: bool = True
) -> AsyncGenerator[StreamItem, None]:
    """Generate, refine and account, falling back to the plan's next model on a retryable
    backend error raised before any answer text was produced. One ``Budget`` spans every
    choice and every model tried: what a failed model spent is charged and reported too."""
    started = time.perf_counter()
    fallbacks: list[str] = []
    budget = Budget(decision.declarations.budget_usd)
    failed = Usage()
    attempts = decision.plan.attempts()
    for position, candidate in enumerate(attempts):
        emitted = False
        try:
            results: list[Refined] = []
            committed = False
            async for item in _attempt(runtime, decision, request, candidate, budget, live):
                if isinstance(item, Started):
                    if not committed:
                        committed = True
                        # A stream's headers leave on this item and name this model: from
                        # here on, falling back would contradict them.
                        emitted = emitted or live
                        yield Committed(candidate.model, tuple(fallbacks))
                    continue
                if isinstance(item, AnswerPiece):
                    emitted = True
                elif isinstance(item, ChoiceDone):
                    results.append(item.result)
                yield item
        except BackendError as exc:
            failed = failed + (exc.spent or Usage()) + sum_usage(results)
            last = position == len(attempts) - 1
            if emitted or not exc.retryable or last:
                raise
            fallbacks.append(candidate.model)
            log.warning(
                "route.fallback",
                model=candidate.model,
                next=attempts[position + 1].model,
                error=type(exc).__name__,
            )
            continue
        yield Done(
            _account(runtime, decision, candidate, results, fallbacks, budget, failed, started)
        )
        return


async def _attempt(
    runtime: Runtime,
    decision: Decision,
    request: ChatCompletionRequest,
    candidate: Candidate,
    budget: Budget,
    live: bool,
) -> AsyncIterator[Started | Progress | AnswerPiece | ChoiceDone]:
    policy = runtime.policy
    backend = runtime.backends[candidate.model]
    index = policy.index
    spending = budget.for_model(
        index.prices[candidate.model],
        critique_tokens=index.critique_tokens,
        template_tokens=index.template_tokens,
        scoring=runtime.prompts.accept == "likelier",
    )
    messages = request.backend_messages()
    base_params = request.sampling()
    for index_ in range(request.n):
        params = base_params
        if index_ and base_params.seed is not None:
            params = params.replace(seed=base_params.seed + index_)
        if spending.applies:
            # A declared budget is a ceiling: each answer is held to the planned length, or
            # less when what is left would not pay for it.
            cap = spending.answer_cap(decision.prompt_tokens, decision.plan.estimate.a)
            params = params.replace(max_tokens=cap)
        async for event in refine(
            backend,
            messages,
            params,
            rounds=candidate.rounds,
            prompts=runtime.prompts,
            budget=spending,
            live=live,
        ):
            if isinstance(event, Started):
                yield event
            elif isinstance(event, RoundStarted):
                yield Progress(event.round, event.of, index_)
            elif isinstance(event, AnswerDelta):
                yield AnswerPiece(index_, event.text)
            elif isinstance(event, Finished):
                yield ChoiceDone(index_, event.result)


def sum_usage(results: list[Refined]) -> Usage:
    usage = Usage()
    for result in results:
        usage = usage + result.usage
    return usage


def _account(
    runtime: Runtime,
    decision: Decision,
    candidate: Candidate,
    results: list[Refined],
    fallbacks: list[str],
    budget: Budget,
    failed: Usage,
    started: float,
) -> Outcome:
    """The outcome: usage over every call, the failed models' included; the cost as charged
    (each call at the price of the model that made it)."""
    usage = failed + sum_usage(results)
    reference = runtime.reference_prices
    return Outcome(
        model=candidate.model,
        rounds_planned=candidate.rounds,
        choices=tuple(results),
        usage=usage,
        fallbacks=tuple(fallbacks),
        cost_usd=budget.spent_usd,
        reference_cost_usd=(
            cost_usd(reference, usage.prompt_tokens, usage.completion_tokens)
            if reference is not None
            else None
        ),
        latency_ms=round((time.perf_counter() - started) * 1000),
    )


def perfics_object(
    decision: Decision, outcome: Outcome, *, trace: bool, include_text: bool = True
) -> dict[str, Any]:
    """The body's ``perfics`` object. USD values are the header strings read back as numbers,
    so body and headers agree to the last digit."""
    answering = decision.candidate(outcome.model)
    body: dict[str, Any] = {
        "model": outcome.model,
        "task": decision.declarations.task,
        "task_source": decision.declarations.task_source,
        "score": round(answering.score or 0.0, 6),
        "rounds": outcome.rounds,
        "rounds_planned": outcome.rounds_planned,
        "stop_reason": outcome.stop_reason,
        "cost_usd": float(format_usd(outcome.cost_usd)),
        "estimated_cost_usd": float(format_usd(answering.estimated_cost_usd)),
        "reference_cost_usd": (
            float(format_usd(outcome.reference_cost_usd))
            if outcome.reference_cost_usd is not None
            else None
        ),
        "fallbacks": list(outcome.fallbacks),
    }
    if trace:
        body["trace"] = [
            {"choice": index, **round_.to_json(include_text)}
            for index, choice in enumerate(outcome.choices)
            for round_ in choice.trace
        ]
    return body
