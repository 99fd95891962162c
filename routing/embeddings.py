"""Which model answers ``POST /v1/embeddings``: the catalog models whose ``capabilities`` list
``embeddings``, cheapest first. There is no task and no quality: an embedding model is chosen
by the client (a catalog id pins it) or by price, and the estimate is its input tokens at its
input price (``routing.cost``).

    plan = plan_embedding(policy, model="auto", input_tokens=[12, 40], ready=None)
    plan.model, plan.estimated_cost_usd, plan.attempts   # the fallback order

Raises ``UnknownModel`` for a model that is neither ``auto``, an alias nor in the catalog,
``CapabilityMissing`` (param ``model``) when no candidate serves embeddings,
``ContextLengthExceeded`` (param ``input``) for an input longer than every candidate holds,
``BudgetExceeded`` when every candidate costs more than ``budget_usd`` and
``ModelsUnavailable`` when none is ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from routing.cost import cost_usd, format_usd
from routing.errors import (
    BudgetExceeded,
    CapabilityMissing,
    ContextLengthExceeded,
    ModelsUnavailable,
    UnknownModel,
    overflow_message,
)
from routing.policy import Policy
from routing.policy_index import index_of


@dataclass(frozen=True, slots=True)
class EmbeddingPlan:
    """The model to ask first and the ones after it, each with the estimated cost of the
    request's inputs (``input_tokens`` in all)."""

    attempts: tuple[tuple[str, float], ...]
    input_tokens: int

    @property
    def model(self) -> str:
        return self.attempts[0][0]

    @property
    def estimated_cost_usd(self) -> float:
        return self.attempts[0][1]


def plan_embedding(
    policy: Policy,
    *,
    model: str,
    input_tokens: Sequence[int],
    ready: frozenset[str] | None = None,
    allowed: frozenset[str] | None = None,
    budget_usd: float | None = None,
) -> EmbeddingPlan:
    """Plan an embeddings request of inputs of ``input_tokens`` tokens each (estimated)."""
    index = index_of(policy)
    if model in index.models:
        pinned: str | None = model
    elif model == "auto" or model in policy.aliases:
        pinned = None
    else:
        raise UnknownModel(model)
    serving = [
        spec
        for spec in policy.models
        if "embeddings" in index.capabilities[spec.id] and pinned in (None, spec.id)
    ]
    if not serving:
        who = f"the model {pinned} does not" if pinned else "no model of this policy can"
        raise CapabilityMissing(f"{who} serve embeddings", param="model")
    longest, total = max(input_tokens, default=0), sum(input_tokens)
    candidates = [
        spec
        for spec in serving
        if (ready is None or spec.id in ready) and (allowed is None or spec.id in allowed)
    ]
    fitting = [spec for spec in candidates if longest <= spec.context_window]
    if candidates and not fitting:
        largest = max(candidates, key=lambda spec: (spec.context_window, spec.id))
        raise ContextLengthExceeded(
            overflow_message(
                largest.context_window, largest.id, f"about {longest} tokens", of="input"
            ),
            param="input",
        )
    costs = sorted((cost_usd(index.prices[spec.id], total, 0), spec.id) for spec in fitting)
    within = [(m, c) for c, m in costs if budget_usd is None or c <= budget_usd]
    if costs and not within:
        raise BudgetExceeded(
            f"no plan fits the budget of {format_usd(budget_usd or 0.0)} USD; the cheapest "
            f"embedding model ({costs[0][1]}) costs {format_usd(costs[0][0])} USD",
            cheapest_cost_usd=costs[0][0],
        )
    if not candidates and all(allowed is None or s.id in allowed for s in serving):
        raise ModelsUnavailable(
            f"{'the model ' + pinned if pinned else 'no embedding model'} is ready; retry shortly"
        )
    if not within:
        raise CapabilityMissing("no embedding model is allowed for this key", param="model")
    return EmbeddingPlan(tuple(within), total)
