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
from dataclasses import dataclass, field, replace

from routing.cost import cost_usd, format_usd
from routing.declarations import Declarations, resolve_declarations
from routing.errors import BudgetExceeded, KeyLimit, QuotaExhausted, shown
from routing.planner import Candidate, Plan, PlanRequest, plan
from routing.policy import Policy
from routing.policy_index import index_of


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a decision depends on, however the request arrived (HTTP or the command line).
    ``headers`` have lowercase names; ``perfics`` is the body's ``perfics`` object;
    ``prompt_tokens`` is the contract's estimate of the messages; ``needs`` the capabilities
    the request uses (``tools`` only when the request forces a call); ``optional_tools`` the
    request sends tools the model may decline, which take about ``tool_tokens`` of the
    context when offered; ``refinable`` false (a raw text completion) plans neither rounds
    nor samples."""

    model: str
    headers: Mapping[str, str]
    perfics: Mapping[str, object] | None
    last_user_text: str
    prompt_tokens: int
    max_tokens: int | None
    choices: int = 1
    needs: frozenset[str] = field(default_factory=frozenset)
    optional_tools: bool = False
    tool_tokens: int = 0
    refinable: bool = True


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What the client's key allows (None: anything): ``left_usd`` is what its budget has left
    this period, as last known. Its limits narrow the declarations: a declared model, task,
    round cap or sample cap beyond them is refused (``KeyLimit``); without declarations they
    stand in for them (a declared budget is checked against what is left when the key's lease
    draws on it, in the proxy)."""

    name: str
    models: frozenset[str] | None = None
    tasks: frozenset[str] | None = None
    max_rounds: int | None = None
    left_usd: float | None = None
    max_samples: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The declarations and the plan; ``sends_tools``: the request came with tools (whether
    each candidate is shown them is its ``offers_tools``)."""

    declarations: Declarations
    plan: Plan
    prompt_tokens: int
    sends_tools: bool = False

    def worst_case_usd(self, policy: Policy) -> float:
        """What the request could cost at most if nothing capped its answers: every model of
        the plan tried in turn, each at its planned rounds or samples, each answer as long as
        the model's context allows. A budget at least this large cannot bind."""
        estimate = self.plan.estimate
        index = index_of(policy)
        total = 0.0
        for attempt in self.plan.attempts():
            spec = index.models[attempt.model]
            longest = replace(estimate, a=max(spec.context_window - estimate.p, estimate.a))
            scored = index.scored(attempt.model, attempt.technique)
            tokens = longest.tokens(attempt.rounds, attempt.samples, scored=scored)
            total += cost_usd(index.prices[attempt.model], *tokens)
        return total

    def candidate(self, model: str) -> Candidate:
        """The plan's entry for the model that answers (the winner unless it fell back)."""
        attempts = self.plan.attempts()
        return next((c for c in attempts if c.model == model), attempts[0])


def decide(
    policy: Policy,
    facts: RequestFacts,
    *,
    ready: frozenset[str] | None = None,
    scope: KeyScope | None = None,
) -> Decision:
    """Resolve the declarations and plan the model and its rounds or samples. ``ready`` None:
    every backend counts as ready (``perfics route``); ``scope`` None: no key limits."""
    declarations = resolve_declarations(
        policy,
        model=facts.model,
        headers=facts.headers,
        body=facts.perfics,
        last_user_text=facts.last_user_text,
    )
    if scope is not None:
        declarations = within_key(declarations, scope)
    request = PlanRequest(
        task=declarations.task,
        prompt_tokens=facts.prompt_tokens,
        max_tokens=facts.max_tokens,
        choices=facts.choices,
        budget_usd=declarations.budget_usd,
        max_rounds=declarations.max_rounds if facts.refinable else 0,
        max_samples=declarations.max_samples if facts.refinable else 1,
        pinned_model=declarations.pinned_model,
        ready=ready,
        needs=facts.needs,
        allowed=scope.models if scope is not None else None,
        optional_tools=facts.optional_tools,
        tool_tokens=facts.tool_tokens,
    )
    try:
        chosen = plan(policy, request)
    except BudgetExceeded as exc:
        if declarations.budget_source != "key":
            raise
        raise QuotaExhausted(
            f"the key '{shown(scope.name if scope else '')}' has "
            f"{format_usd(declarations.budget_usd or 0.0)} USD left this period; the cheapest "
            f"plan costs {format_usd(exc.cheapest_cost_usd)} USD"
        ) from exc
    sends_tools = facts.optional_tools or "tools" in facts.needs
    return Decision(declarations, chosen, facts.prompt_tokens, sends_tools)


def within_key(declarations: Declarations, scope: KeyScope) -> Declarations:
    """``declarations`` narrowed by the key's limits; raises when they ask for more."""
    name = shown(scope.name)
    if scope.models is not None and declarations.pinned_model not in (None, *scope.models):
        raise KeyLimit(
            f"the key '{name}' may not use the model '{declarations.pinned_model}' "
            f"(allowed: {', '.join(sorted(scope.models))})",
            param="model",
        )
    if scope.tasks is not None and declarations.task not in scope.tasks:
        raise KeyLimit(
            f"the key '{name}' may not be used for the task '{declarations.task}' "
            f"(allowed: {', '.join(sorted(scope.tasks))})",
            param="task",
        )
    changes: dict[str, object] = {}
    if scope.max_rounds is not None:
        if declarations.max_rounds is not None and declarations.max_rounds > scope.max_rounds:
            raise KeyLimit(
                f"the key '{name}' allows at most {scope.max_rounds} refinement rounds; the "
                f"request declared {declarations.max_rounds}",
                param="max_rounds",
            )
        if declarations.max_rounds is None:
            changes["max_rounds"] = scope.max_rounds
    if scope.max_samples is not None:
        if declarations.max_samples is not None and declarations.max_samples > scope.max_samples:
            raise KeyLimit(
                f"the key '{name}' allows at most {scope.max_samples} samples; the request "
                f"declared {declarations.max_samples}",
                param="max_samples",
            )
        if declarations.max_samples is None:
            changes["max_samples"] = scope.max_samples
    left = scope.left_usd
    if left is not None and declarations.budget_usd is None:
        # What the key has left stands in for a budget the request did not declare; whether a
        # declared one fits it is the key's lease to say (proxy.leases), against the store.
        changes |= {"budget_usd": max(left, 0.0), "budget_source": "key"}
    return replace(declarations, **changes) if changes else declarations  # type: ignore[arg-type]
