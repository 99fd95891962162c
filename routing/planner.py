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
    InvalidDeclaration,
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


class Candidate(NamedTuple):
    """One (model, rounds) considered. ``score`` is None only for ``no quality for task``;
    ``reason`` is None exactly when ``eligible``. (A named tuple: plans build hundreds.)"""

    model: str
    rounds: int
    score: float | None
    estimated_cost_usd: float
    eligible: bool
    reason: str | None


# A model's best eligible candidate, which sorts best first as a plain tuple:
# (-score, cost, rounds, model).
_Best = tuple[float, float, int, str]
# Candidates as ranges of rounds: (model, first rounds, last rounds, reason); reason None for
# eligible ones. Costs and scores are recomputed, identically, only when listed.
_Range = tuple[str, int, int, str | None]


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
            self.candidate(model, rounds, reason)
            for model, first, last, reason in self.ranges
            for rounds in range(first, last + 1)
        ]

    def candidate(self, model: str, rounds: int, reason: str | None) -> Candidate:
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
        return Candidate(model, rounds, score, cost, reason is None, reason)


@dataclass(frozen=True, slots=True)
class Plan:
    """The winning model and rounds, its score and estimated cost, the task planned for and
    the token estimate (``estimate``) the costs were computed from."""

    model: str
    rounds: int
    score: float
    estimated_cost_usd: float
    task: str
    estimate: TokenEstimate
    _rows: _Rows = field(repr=False, compare=False)

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
                Candidate(m, r, -s, c, True, None) for s, c, r, m in rows.best_per_model
            )
        return rows.attempts


def _order(candidate: Candidate) -> tuple[bool, float, float, int, str]:
    score = candidate.score
    return (
        not candidate.eligible,
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
            ranges.append((model, 0, 0, NOT_PINNED))
            continue
        if allowed is not None and model not in allowed:
            ranges.append((model, 0, 0, NOT_ALLOWED))
            continue
        if needs and not needs <= capabilities[model]:
            ranges.append((model, 0, 0, lacks(needs - capabilities[model])))
            continue
        if ready is not None and model not in ready:
            ranges.append((model, 0, 0, NOT_READY))
            continue
        if needed > context_window:
            ranges.append((model, 0, 0, CONTEXT_WINDOW))
            continue
        if top > 0 and needed_round > context_window:
            # A rewrite reads the prompt, the answer, the critique and the template.
            ranges.append((model, 1, top, CONTEXT_WINDOW))
            top = 0
        if cap is not None and cap < top:
            ranges.append((model, cap + 1, top, ABOVE_CAP))
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
                ranges.append((model, rounds, top, OVER_BUDGET))
                last = rounds - 1
                break
            negated = weight * log10((cost if cost > floor else floor) / reference) - terms[rounds]
            if negated < best_negated:
                best_negated, best_cost, best_rounds = negated, cost, rounds
        if best_rounds >= 0:
            best_per_model.append((best_negated, best_cost, best_rounds, model))
            ranges.append((model, 0, last, None))
    for model in task.unrated:
        ranges.append((model, 0, 0, NOT_PINNED if pinned not in (None, model) else NO_QUALITY))

    rows = _Rows(task, index, estimate, best_per_model, ranges)
    if not best_per_model:
        raise _no_plan(request, rows)
    best = min(best_per_model)
    return Plan(
        model=best[3],
        rounds=best[2],
        score=-best[0],
        estimated_cost_usd=best[1],
        task=request.task,
        estimate=estimate,
        _rows=rows,
    )


def lacks(missing: frozenset[str]) -> str:
    """The reason for a model without ``missing`` capabilities: ``lacks tools``."""
    return LACKS + ", ".join(sorted(missing))


def _no_plan(
    request: PlanRequest, rows: _Rows
) -> BudgetExceeded | CapabilityMissing | NoEligiblePlan:
    considered = [(m, r) for m, _, _, r in rows.ranges if r not in (NOT_PINNED, NO_QUALITY)]
    lacking = [r for _, r in considered if r is not None and r.startswith(LACKS)]
    if considered and len(lacking) == len(considered):
        missing = sorted({c for r in lacking for c in r.removeprefix(LACKS).split(", ")})
        first = next(c for c in CAPABILITIES if c in missing)
        who = f"the model {request.pinned_model}" if request.pinned_model else "no model"
        verb = "cannot serve" if request.pinned_model else "of this policy can serve"
        return CapabilityMissing(
            f"{who} {verb} what the request uses: {', '.join(missing)}",
            param=CAPABILITY_PARAMS[first],
        )
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
    reasons: dict[str, str] = {}
    for model, _, _, reason in rows.ranges:
        if reason is not None:
            reasons.setdefault(model, reason)
    detail = "; ".join(f"{model}: {reason}" for model, reason in reasons.items())
    estimate = rows.estimate
    return NoEligiblePlan(
        f"no model can serve task '{request.task}' (prompt {estimate.p} + answer "
        f"{estimate.a} tokens): {detail}"
    )
