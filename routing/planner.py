"""Planning: the model and how to spend test-time compute on it (refinement rounds, or samples
to select from) with the best PeRFICS score.

Candidates are every (model, rounds) with ``rounds <= min(task.max_rounds, len(Q) - 1,
declared cap)``, the largest call fitting the context (``p + a <= context_window`` for 0 rounds,
``p + 2a + k + t`` for more), a ready backend, and an estimated cost within the budget when
one applies (docs/architecture.md, "Planning rule"); and every (model, technique, samples)
listed (``best_of``, ``vote``) with ``samples <= min(task.max_samples, declared cap)``, under
the draft's context rule, never for a request with several choices or a forced tool call. The
highest score wins; equal scores (exact float equality) go to the lower cost, then the
technique (draft, refine, best_of, vote), then fewer rounds or samples, then the model id.

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
- ``samples above cap``   within the task's ``max_samples``, above the declared cap
- ``n > 1``               samples for a request that asks for several choices (never selected)
- ``forced tool call``    samples for a request that forces a tool call (never selected)
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
    overflow_message,
    shown,
)
from routing.estimate import TokenEstimate, answer_tokens
from routing.perfics import COST_FLOOR_USD, perfics_score
from routing.policy import Policy
from routing.policy_index import PolicyIndex, TaskIndex, index_of
from routing.techniques import SAMPLED_PLACE, SELECTION_TECHNIQUES, Technique, place, unplace

NOT_PINNED = "not pinned"
NOT_ALLOWED = "not allowed for key"
LACKS = "lacks "
NO_QUALITY = "no quality for task"
NOT_READY = "backend not ready"
CONTEXT_WINDOW = "context window"
ABOVE_CAP = "rounds above cap"
SAMPLES_ABOVE_CAP = "samples above cap"
SEVERAL_CHOICES = "n > 1"
FORCED_TOOL_CALL = "forced tool call"
OVER_BUDGET = "over budget"


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What a plan depends on. ``ready`` None means every backend is ready; ``needs`` are the
    capabilities the request uses (``routing.backend_options.CAPABILITIES``); ``max_rounds``
    and ``max_samples`` are declared caps (None: the task's)."""

    task: str
    prompt_tokens: int
    max_tokens: int | None = None
    choices: int = 1
    budget_usd: float | None = None
    max_rounds: int | None = None
    max_samples: int | None = None
    pinned_model: str | None = None
    ready: frozenset[str] | None = None
    needs: frozenset[str] = frozenset()
    allowed: frozenset[str] | None = None
    optional_tools: bool = False
    tool_tokens: int = 0


class Candidate(NamedTuple):
    """One (model, technique, rounds or samples) considered: ``technique`` is ``draft`` (0
    rounds, 1 sample), ``refine`` (``rounds`` >= 1, 1 sample), or ``selection``: ``best_of`` or
    ``vote`` (0 rounds, ``samples`` >= 2). ``score`` is None only for ``no quality for task``;
    ``reason`` is None exactly when ``eligible``; ``offers_tools``: the request's tools are
    shown to this model (false also when the request sends none). (A named tuple: plans build
    hundreds.)"""

    model: str
    rounds: int
    score: float | None
    estimated_cost_usd: float
    eligible: bool
    reason: str | None
    offers_tools: bool = False
    samples: int = 1
    selection: Technique | None = None

    @property
    def technique(self) -> Technique:
        if self.selection is not None:
            return self.selection
        return "refine" if self.rounds else "draft"


# A model's best eligible candidate, which sorts best first as a plain tuple:
# (tools hidden, -score, cost, place, model, tools offered); "hidden" is only ever true for a
# request with optional tools, whose candidates that take them rank first; the place
# (``routing.techniques.place``) is the rounds for draft and refine, so a policy without
# techniques plans as it did before them.
_Best = tuple[bool, float, float, int, str, bool]
# Candidates as ranges of rounds: (model, first rounds, last rounds, reason, offers tools);
# reason None for eligible ones. Costs and scores are recomputed, identically, only when listed.
_Range = tuple[str, int, int, str | None, bool]
# A sampled candidate: (model, place, reason, offers tools).
_Sampled = tuple[str, int, str | None, bool]


@dataclass(slots=True)
class _Rows:
    """What a plan found. ``Candidate`` lists are built on first use: a request needs the
    winner and the fallback order; only ``perfics route`` lists every candidate."""

    task: TaskIndex
    index: PolicyIndex
    estimate: TokenEstimate
    best_per_model: list[_Best]
    ranges: list[_Range]
    sampled: list[_Sampled]
    candidates: tuple[Candidate, ...] | None = None
    attempts: tuple[Candidate, ...] | None = None

    def listed(self) -> list[Candidate]:
        """Every candidate, unsorted."""
        return [
            self.candidate(model, rounds, reason, offers)
            for model, first, last, reason, offers in self.ranges
            for rounds in range(first, last + 1)
        ] + [
            self.sampled_candidate(model, found, reason, offers)
            for model, found, reason, offers in self.sampled
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

    def sampled_candidate(
        self, model: str, found: int, reason: str | None, offers: bool
    ) -> Candidate:
        """The candidate (model, technique, samples) at place ``found``, its cost and score
        computed as ``plan`` does."""
        technique, _, samples = unplace(found)
        scored = self.index.scored(model, technique)
        cost = cost_usd(self.index.prices[model], *self.estimate.tokens(0, samples, scored=scored))
        rated = self.task.by_model[model]
        quality = next(q for t, k, q in rated.sampled if (t, k) == (technique, samples))
        score = perfics_score(
            rated.quality[0], quality, cost, self.index.weights, self.index.cost_reference_usd
        )
        return Candidate(model, 0, score, cost, reason is None, reason, offers, samples, technique)


@dataclass(frozen=True, slots=True)
class Plan:
    """The winning model and technique (``rounds`` of refinement, or ``samples`` to select
    from; ``Candidate`` says which values go together), its score and estimated cost, the task
    planned for and the token estimate (``estimate``) the costs were computed from;
    ``offers_tools``: the winner is shown the request's tools."""

    model: str
    rounds: int
    score: float
    estimated_cost_usd: float
    task: str
    estimate: TokenEstimate
    _rows: _Rows = field(repr=False, compare=False)
    offers_tools: bool = False
    technique: Technique = "draft"
    samples: int = 1

    def tokens(self, candidate: Candidate | None = None) -> tuple[int, int]:
        """``(input, output)`` tokens the estimate gives the winner, or ``candidate`` (one of
        this plan's): what its estimated cost prices."""
        chosen = candidate if candidate is not None else self.attempts()[0]
        scored = self._rows.index.scored(chosen.model, chosen.technique)
        return self.estimate.tokens(chosen.rounds, chosen.samples, scored=scored)

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """Every candidate, best first: eligible ones by score (ties: cost, technique, rounds or
        samples, model id), then ineligible ones by score (None last), cost, technique, rounds
        or samples, model id."""
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
            if rows.task.options:
                rows.attempts = tuple(
                    _attempt(m, -s, c, at, offers) for _, s, c, at, m, offers in rows.best_per_model
                )
            else:  # the place is the rounds
                rows.attempts = tuple(
                    Candidate(m, r, -s, c, True, None, offers)
                    for _, s, c, r, m, offers in rows.best_per_model
                )
        return rows.attempts


def _attempt(model: str, score: float, cost: float, found: int, offers: bool) -> Candidate:
    """The eligible candidate at place ``found``."""
    technique, rounds, samples = unplace(found)
    selection = technique if technique in SELECTION_TECHNIQUES else None
    return Candidate(model, rounds, score, cost, True, None, offers, samples, selection)


def _order(candidate: Candidate) -> tuple[bool, bool, float, float, int, str]:
    score = candidate.score
    return (
        not candidate.eligible,
        not candidate.offers_tools,
        -score if score is not None else math.inf,
        candidate.estimated_cost_usd,
        place(candidate.technique, candidate.rounds, candidate.samples),
        candidate.model,
    )


def _cost(prices: Prices, estimate: TokenEstimate, rounds: int) -> float:
    return cost_usd(prices, estimate.input_tokens(rounds), estimate.output_tokens(rounds))


def plan(policy: Policy, request: PlanRequest) -> Plan:
    """Plan ``request`` under ``policy``. Raises ``InvalidDeclaration`` for an undeclared task,
    ``UnknownModel`` for an unknown pinned model, ``BudgetExceeded`` when candidates exist but
    none fits the budget, and ``NoEligiblePlan`` when there is no candidate at all."""
    index = index_of(policy)
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

    sampled = (
        _samples(request, task, index, estimate, best_per_model, ranges) if task.options else []
    )
    rows = _Rows(task, index, estimate, best_per_model, ranges, sampled)
    if not best_per_model:
        raise _no_plan(request, rows)
    _, negated, cost, at, model, offers = min(best_per_model)
    if at < SAMPLED_PLACE:
        technique: Technique = "refine" if at else "draft"
        rounds, samples = at, 1
    else:
        technique, rounds, samples = unplace(at)
    return Plan(
        model=model,
        rounds=rounds,
        score=-negated,
        estimated_cost_usd=cost,
        task=request.task,
        estimate=estimate,
        _rows=rows,
        offers_tools=offers,
        technique=technique,
        samples=samples,
    )


def _samples(
    request: PlanRequest,
    task: TaskIndex,
    index: PolicyIndex,
    estimate: TokenEstimate,
    best_per_model: list[_Best],
    ranges: list[_Range],
) -> list[_Sampled]:
    """The task's ``best_of`` and ``vote`` candidates of every model that got past the
    model-level checks, each its own row; a better one replaces its model's entry in
    ``best_per_model`` (ties: lower cost, then the place: technique, then fewer). A model whose
    draft is over budget has every sample over it too (each costs at least a draft)."""
    p, a = estimate.p, estimate.a
    cap = request.max_samples
    budget = request.budget_usd
    no_sampling = (
        SEVERAL_CHOICES
        if request.choices > 1
        else FORCED_TOOL_CALL
        if "tools" in request.needs
        else None
    )
    weight, reference = index.weights.cost, index.cost_reference_usd
    floor = COST_FLOOR_USD
    log10 = math.log10
    scored_read = 2 * p + a  # a scored sample's prompt, then its prompt and answer read back
    listed = task.options
    sampled: list[_Sampled] = []
    for position, (hidden, best_negated, best_cost, best_at, model, offers) in enumerate(
        best_per_model
    ):
        options = listed.get(model)
        if options is None:
            continue
        prices = index.prices[model]
        price_in, price_out = prices.input_usd_per_mtok, prices.output_usd_per_mtok
        better = False
        for found, samples, term, scored in options:
            reason: str | None = no_sampling
            if reason is None and cap is not None and samples > cap:
                reason = SAMPLES_ABOVE_CAP
            if reason is None:
                read = samples * (scored_read if scored else p)
                cost = (read * price_in + samples * a * price_out) / MTOK
                if budget is not None and cost > budget:
                    reason = OVER_BUDGET
                else:
                    negated = weight * log10((cost if cost > floor else floor) / reference) - term
                    if (negated, cost, found) < (best_negated, best_cost, best_at):
                        best_negated, best_cost, best_at, better = negated, cost, found, True
            sampled.append((model, found, reason, offers))
        if better:
            best_per_model[position] = (hidden, best_negated, best_cost, best_at, model, offers)
    for model, first, _, reason, offers in ranges:
        if first == 0 and reason == OVER_BUDGET and model in listed:
            for found, samples, _, _ in listed[model]:
                above = cap is not None and samples > cap
                why = no_sampling or (SAMPLES_ABOVE_CAP if above else OVER_BUDGET)
                sampled.append((model, found, why, offers))
    return sampled


def spending(chosen: Candidate | Plan) -> str:
    """How a plan or candidate spends its compute, in words: ``2 rounds``, ``best_of 8
    samples``."""
    if chosen.technique in SELECTION_TECHNIQUES:
        return f"{chosen.technique} {chosen.samples} samples"
    return f"{chosen.rounds} {'round' if chosen.rounds == 1 else 'rounds'}"


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
        cheapest = min(over_budget, key=lambda c: _order(c)[3:])
        return BudgetExceeded(
            f"no plan fits the budget of {format_usd(request.budget_usd)} USD; the cheapest "
            f"plan ({cheapest.model}, {spending(cheapest)}) costs "
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
    used = (
        f"about {prompt} tokens{with_tools}, and the answer needs {estimate.a} more "
        "(max_tokens, or the task's answer_tokens)"
    )
    return ContextLengthExceeded(
        overflow_message(windows[largest], largest, used),
        param="tools" if fits_without_tools else "messages",
    )
