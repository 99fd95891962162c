"""Planning: the model and number of refinement rounds with the best PeRFICS score.

Candidates are every (model, rounds) with ``rounds <= min(task.max_rounds, len(Q) - 1,
declared cap)``, the largest call fitting the context (``p + a <= context_window`` for 0 rounds,
``p + 2a + k + t`` for more), a ready backend, and an estimated cost within the budget when
one applies (docs/architecture.md, "Planning rule"). The highest score wins; equal scores
(exact float equality) go to the lower cost, then fewer rounds, then the model id.

Ineligible candidates are listed too, so ``perfics route --explain`` can say why a model lost.
``Candidate.reason`` is one of:

- ``not pinned``          the request pinned another model (one row per model, 0 rounds)
- ``not allowed for key`` the client's key may not use the model (one row per model, 0 rounds)
- ``lacks X``             the model cannot serve a capability the request uses (``lacks tools``)
- ``no quality for task`` no quality list for the task, nor ``default`` (one row, score None)
- ``backend not ready``   the model's backend is not ready (one row per model, 0 rounds)
- ``context window``      ``p + a`` exceeds the model's context window (one row, 0 rounds), or
                          a rewrite's ``p + 2a + k + t`` does (a row for rounds 1 and up)
- ``rounds above cap``    within the task's rounds and the quality list, above the declared cap
- ``over budget``         the estimated cost exceeds the budget

Model-level reasons are checked in that order, and only the first applies.

Tools the model may decline (``optional_tools``: ``tool_choice`` ``auto``, ``none`` or absent)
are not a capability the request needs: they are offered to a model that can call them and
whose context holds them (``p + tool_tokens + a``), and such candidates rank before every other
whatever their score; the others are candidates without the tools (``offers_tools`` false).
With ``tools.unsupported: refuse`` in the policy, or a ``required`` or named ``tool_choice``
(``tools`` in ``needs``), the tools must be offered: the tool tokens count against the
context, and a model that cannot take them is not a candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from routing.backend_options import CAPABILITIES, CAPABILITY_PARAMS
from routing.cost import MTOK, Prices, cost_usd, format_usd
from routing.errors import (
    BudgetExceeded,
    CapabilityMissing,
    ContextLengthExceeded,
    InvalidDeclaration,
    ModelsUnavailable,
    NoEligiblePlan,
    UnknownModel,
    shown,
)
from routing.estimate import TokenEstimate, answer_tokens
from routing.perfics import COST_FLOOR_USD, perfics_score
from routing.policy import Policy
from routing.policy_index import PolicyIndex, TaskIndex

NOT_PINNED = "not pinned"
NOT_ALLOWED = "not allowed for key"
LACKS = "lacks "
NO_QUALITY = "no quality for task"
NOT_READY = "backend not ready"
CONTEXT_WINDOW = "context window"
ABOVE_CAP = "rounds above cap"
OVER_BUDGET = "over budget"


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What a plan depends on. ``ready`` None means every backend is ready; ``needs`` are the
    capabilities the request uses (``routing.backend_options.CAPABILITIES``)."""

    task: str
    prompt_tokens: int
    max_tokens: int | None = None
    choices: int = 1
    budget_usd: float | None = None
    max_rounds: int | None = None
    pinned_model: str | None = None
    ready: frozenset[str] | None = None
    needs: frozenset[str] = frozenset()
    allowed: frozenset[str] | None = None
    optional_tools: bool = False
    tool_tokens: int = 0


class Candidate(NamedTuple):
    """One (model, rounds) considered. ``score`` is None only for ``no quality for task``;
    ``reason`` is None exactly when ``eligible``; ``offers_tools``: the request's tools are shown
    to this model (false also when the request sends none). (A named tuple: plans build
    hundreds.)"""

    model: str
    rounds: int
    score: float | None
    estimated_cost_usd: float
    eligible: bool
    reason: str | None
    offers_tools: bool = False


# A model's best eligible candidate, which sorts best first as a plain tuple:
# (tools hidden, -score, cost, rounds, model, tools offered); "hidden" is only ever true for a
# request with optional tools, whose candidates that take them rank first.
_Best = tuple[bool, float, float, int, str, bool]
# Candidates as ranges of rounds: (model, first rounds, last rounds, reason, offers tools);
# reason None for eligible ones. Costs and scores are recomputed, identically, only when listed.
_Range = tuple[str, int, int, str | None, bool]


@dataclass(slots=True)
class _Rows:
    """What a plan found. ``Candidate`` lists are built on first use: a request needs the
    winner and the fallback order; only ``perfics route`` lists every candidate."""

    task: TaskIndex
    index: PolicyIndex
    estimate: TokenEstimate
    best_per_model: list[_Best]
    ranges: list[_Range]
    candidates: tuple[Candidate, ...] | None = None
    attempts: tuple[Candidate, ...] | None = None

    def listed(self) -> list[Candidate]:
        """Every candidate, unsorted."""
        return [
            self.candidate(model, rounds, reason, offers)
            for model, first, last, reason, offers in self.ranges
            for rounds in range(first, last + 1)
        ]

    def candidate(
        self, model: str, rounds: int, reason: str | None, offers_tools: bool = False
    ) -> Candidate:
        """The candidate (model, rounds), its cost and score computed as ``plan`` does."""
        cost = _cost(self.index.prices[model], self.estimate, rounds)
        rated = self.task.by_model.get(model)
        score = None
        if rated is not None:
            quality = rated.quality
            score = perfics_score(
                quality[0],
                quality[rounds],
                cost,
                self.index.weights,
                self.index.cost_reference_usd,
            )
        return Candidate(model, rounds, score, cost, reason is None, reason, offers_tools)


@dataclass(frozen=True, slots=True)
class Plan:
    """The winning model and rounds, its score and estimated cost, the task planned for and
    the token estimate (``estimate``) the costs were computed from; ``offers_tools``: the
    winner is shown the request's tools."""

    model: str
    rounds: int
    score: float
    estimated_cost_usd: float
    task: str
    estimate: TokenEstimate
    _rows: _Rows = field(repr=False, compare=False)
    offers_tools: bool = False

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """Every candidate, best first: eligible ones by score (ties: cost, rounds, model id),
        then ineligible ones by score (None last), cost, rounds, model id."""
        rows = self._rows
        if rows.candidates is None:
            rows.candidates = tuple(sorted(rows.listed(), key=_order))
        return rows.candidates

    def attempts(self) -> tuple[Candidate, ...]:
        """The best eligible candidate of each model, best first: the winner, then the
        fallback order."""
        rows = self._rows
        if rows.attempts is None:
            rows.best_per_model.sort()
            rows.attempts = tuple(
                Candidate(m, r, -s, c, True, None, offers)
                for _, s, c, r, m, offers in rows.best_per_model
            )
        return rows.attempts


def _order(candidate: Candidate) -> tuple[bool, bool, float, float, int, str]:
    score = candidate.score
    return (
        not candidate.eligible,
        not candidate.offers_tools,
        -score if score is not None else math.inf,
        candidate.estimated_cost_usd,
        candidate.rounds,
        candidate.model,
    )


def _cost(prices: Prices, estimate: TokenEstimate, rounds: int) -> float:
    return cost_usd(prices, estimate.input_tokens(rounds), estimate.output_tokens(rounds))


def plan(policy: Policy, request: PlanRequest) -> Plan:
    """Plan ``request`` under ``policy``. Raises ``InvalidDeclaration`` for an undeclared task,
    ``UnknownModel`` for an unknown pinned model, ``BudgetExceeded`` when candidates exist but
    none fits the budget, and ``NoEligiblePlan`` when there is no candidate at all."""
    index = policy.index
    task = index.tasks.get(request.task)
    if task is None:
        raise InvalidDeclaration(f"unknown task '{shown(request.task)}'", param="task")
    pinned = request.pinned_model
    if pinned is not None and pinned not in index.models:
        raise UnknownModel(pinned)
    p = request.prompt_tokens
    a = answer_tokens(request.max_tokens, task.answer_tokens)
    estimate = TokenEstimate(p, a, index.critique_tokens, index.template_tokens, request.choices)
    # Token counts by rounds, as ints, so costs come out exactly as ``cost_usd`` computes them.
    tokens_in = [estimate.input_tokens(r) for r in range(task.most_rounds + 1)]
    tokens_out = [estimate.output_tokens(r) for r in range(task.most_rounds + 1)]
    needed = p + a
    needed_round = p + 2 * a + estimate.k + estimate.t
    cap = request.max_rounds
    needs = request.needs
    optional_tools = request.optional_tools
    if optional_tools and index.refuse_unoffered_tools:
        needs, optional_tools = needs | {"tools"}, False
    forced_tools = "tools" in needs
    tool_tokens = request.tool_tokens
    capabilities = index.capabilities
    budget = request.budget_usd
    ready = request.ready
    allowed = request.allowed
    weight = index.weights.cost
    reference = index.cost_reference_usd
    floor = COST_FLOOR_USD
    log10 = math.log10
    inf = math.inf

    best_per_model: list[_Best] = []
    ranges: list[_Range] = []
    for model, context_window, price_in, price_out, terms, top in task.rows:
        if pinned is not None and model != pinned:
            ranges.append((model, 0, 0, NOT_PINNED, False))
            continue
        if allowed is not None and model not in allowed:
            ranges.append((model, 0, 0, NOT_ALLOWED, False))
            continue
        if needs and not needs <= capabilities[model]:
            ranges.append((model, 0, 0, lacks(needs - capabilities[model]), False))
            continue
        if ready is not None and model not in ready:
            ranges.append((model, 0, 0, NOT_READY, False))
            continue
        offers = forced_tools or (
            optional_tools
            and "tools" in capabilities[model]
            and needed + tool_tokens <= context_window
        )
        extra = tool_tokens if offers else 0
        if needed + extra > context_window:
            ranges.append((model, 0, 0, CONTEXT_WINDOW, offers))
            continue
        if top > 0 and needed_round + extra > context_window:
            # A rewrite reads the prompt, the answer, the critique and the template.
            ranges.append((model, 1, top, CONTEXT_WINDOW, offers))
            top = 0
        if cap is not None and cap < top:
            ranges.append((model, cap + 1, top, ABOVE_CAP, offers))
            top = cap
        # Within a model, costs never fall as rounds rise (prices are non-negative), so only
        # a strictly better score displaces fewer rounds, and the budget cuts a tail.
        best_negated = inf
        best_cost = 0.0
        best_rounds = -1
        last = top
        for rounds in range(top + 1):
            cost = (tokens_in[rounds] * price_in + tokens_out[rounds] * price_out) / MTOK
            if budget is not None and cost > budget:
                ranges.append((model, rounds, top, OVER_BUDGET, offers))
                last = rounds - 1
                break
            negated = weight * log10((cost if cost > floor else floor) / reference) - terms[rounds]
            if negated < best_negated:
                best_negated, best_cost, best_rounds = negated, cost, rounds
        if best_rounds >= 0:
            hidden = optional_tools and not offers
            best = (hidden, best_negated, best_cost, best_rounds, model, offers)
            best_per_model.append(best)
            ranges.append((model, 0, last, None, offers))
    for model in task.unrated:
        reason = NOT_PINNED if pinned not in (None, model) else NO_QUALITY
        ranges.append((model, 0, 0, reason, False))

    rows = _Rows(task, index, estimate, best_per_model, ranges)
    if not best_per_model:
        raise _no_plan(request, rows)
    _, negated, cost, rounds, model, offers = min(best_per_model)
    return Plan(
        model=model,
        rounds=rounds,
        score=-negated,
        estimated_cost_usd=cost,
        task=request.task,
        estimate=estimate,
        _rows=rows,
        offers_tools=offers,
    )


def lacks(missing: frozenset[str]) -> str:
    """The reason for a model without ``missing`` capabilities: ``lacks tools``."""
    return LACKS + ", ".join(sorted(missing))


def _no_plan(
    request: PlanRequest, rows: _Rows
) -> (
    BudgetExceeded | CapabilityMissing | ContextLengthExceeded | ModelsUnavailable | NoEligiblePlan
):
    reasons: dict[str, str] = {}  # each model's first reason: the model-level one
    for model, _, _, reason, _ in rows.ranges:
        if reason is not None:
            reasons.setdefault(model, reason)
    considered = {m: r for m, r in reasons.items() if r not in (NOT_PINNED, NO_QUALITY)}
    lacking = [r for r in considered.values() if r.startswith(LACKS)]
    if considered and len(lacking) == len(considered):
        missing = sorted({c for r in lacking for c in r.removeprefix(LACKS).split(", ")})
        first = next(c for c in CAPABILITIES if c in missing)
        who = f"the model {request.pinned_model}" if request.pinned_model else "no model"
        verb = "cannot serve" if request.pinned_model else "of this policy can serve"
        return CapabilityMissing(
            f"{who} {verb} what the request uses: {', '.join(missing)}",
            param=CAPABILITY_PARAMS[first],
        )
    if considered and all(r == NOT_READY for r in considered.values()):
        return ModelsUnavailable(
            f"no model that can serve task '{request.task}' is ready: "
            f"{', '.join(considered)}; retry shortly"
        )
    estimate = rows.estimate
    too_long = [m for m, r in considered.items() if r == CONTEXT_WINDOW]
    if too_long and len(too_long) + len(lacking) == len(considered):
        return _context_exceeded(request, rows, too_long)
    over_budget = [c for c in rows.listed() if c.reason == OVER_BUDGET]
    if over_budget and request.budget_usd is not None:
        cheapest = min(over_budget, key=lambda c: (c.estimated_cost_usd, c.rounds, c.model))
        rounds = cheapest.rounds
        return BudgetExceeded(
            f"no plan fits the budget of {format_usd(request.budget_usd)} USD; the cheapest "
            f"plan ({cheapest.model}, {rounds} {'round' if rounds == 1 else 'rounds'}) costs "
            f"{format_usd(cheapest.estimated_cost_usd)} USD",
            cheapest_cost_usd=cheapest.estimated_cost_usd,
        )
    detail = "; ".join(f"{model}: {reason}" for model, reason in reasons.items())
    return NoEligiblePlan(
        f"no model can serve task '{request.task}' (prompt {estimate.p} + answer "
        f"{estimate.a} tokens): {detail}"
    )


def _context_exceeded(
    request: PlanRequest, rows: _Rows, models: list[str]
) -> ContextLengthExceeded:
    """OpenAI's overflow error, naming the largest context among ``models`` and what the
    request needs of it (estimated: the planner does not tokenize)."""
    windows = {m: rows.index.models[m].context_window for m in models}
    largest = max(windows, key=lambda m: (windows[m], m))
    estimate = rows.estimate
    forced = "tools" in request.needs or (
        request.optional_tools and rows.index.refuse_unoffered_tools
    )
    tools = request.tool_tokens if forced else 0
    prompt = estimate.p + tools
    with_tools = f" ({tools} of them the tools)" if tools else ""
    fits_without_tools = tools and estimate.p + estimate.a <= windows[largest]
    return ContextLengthExceeded(
        f"This model's maximum context length is {windows[largest]} tokens ({largest}). "
        f"However, your messages resulted in about {prompt} tokens{with_tools}, and the answer "
        f"needs {estimate.a} more (max_tokens, or the task's answer_tokens). Please reduce the "
        f"length of the messages or of max_tokens.",
        param="tools" if fits_without_tools else "messages",
    )
