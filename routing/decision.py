"""The decision for one request: what the client declared, and the plan. The one function the
proxy (``proxy.pipeline``) and ``perfics route`` share, so the two cannot drift.

    facts = RequestFacts(model="auto", headers={}, perfics=None, last_user_text="...",
                         prompt_tokens=120, max_tokens=None)
    decision = decide(policy, facts, ready=frozenset({"smollm2-135m"}))
    decision.plan.model, decision.plan.rounds, decision.declarations.task_source

Raises ``routing.errors.RoutingError`` subclasses (unknown model, invalid declaration, budget
exceeded, missing capability, no eligible model); the proxy translates them once, in
``proxy.errors.from_routing_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from routing.declarations import Declarations, resolve_declarations
from routing.planner import Candidate, Plan, PlanRequest, plan
from routing.policy import Policy


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a decision depends on, however the request arrived (HTTP or the command line).
    ``headers`` have lowercase names; ``perfics`` is the body's ``perfics`` object;
    ``prompt_tokens`` is the contract's estimate of the messages; ``needs`` the capabilities
    the request uses."""

    model: str
    headers: Mapping[str, str]
    perfics: Mapping[str, object] | None
    last_user_text: str
    prompt_tokens: int
    max_tokens: int | None
    choices: int = 1
    needs: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Decision:
    declarations: Declarations
    plan: Plan
    prompt_tokens: int

    def candidate(self, model: str) -> Candidate:
        """The plan's entry for the model that answers (the winner unless it fell back)."""
        attempts = self.plan.attempts()
        return next((c for c in attempts if c.model == model), attempts[0])


def decide(policy: Policy, facts: RequestFacts, *, ready: frozenset[str] | None = None) -> Decision:
    """Resolve the declarations and plan the model and rounds. ``ready`` None: every backend
    counts as ready (``perfics route``)."""
    declarations = resolve_declarations(
        policy,
        model=facts.model,
        headers=facts.headers,
        body=facts.perfics,
        last_user_text=facts.last_user_text,
    )
    chosen = plan(
        policy,
        PlanRequest(
            task=declarations.task,
            prompt_tokens=facts.prompt_tokens,
            max_tokens=facts.max_tokens,
            choices=facts.choices,
            budget_usd=declarations.budget_usd,
            max_rounds=declarations.max_rounds,
            pinned_model=declarations.pinned_model,
            ready=ready,
            needs=facts.needs,
        ),
    )
    return Decision(declarations, chosen, facts.prompt_tokens)
