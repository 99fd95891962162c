"""The ``x-perfics-*`` response headers, built from the decision and the outcome.

Decision headers go on every chat completion response, streaming or not; outcome headers only
on non-streaming ones (a stream's headers leave before the work is done). USD values are
``routing.cost.format_usd`` strings: plain decimals, no exponent, at most 12 decimals.
``x-perfics-tools`` (only when the request sent tools): ``offered`` when the answering model
was shown them, ``not-offered`` when it answered in text without them (it cannot call tools,
or its context cannot hold them). ``x-perfics-technique`` (``draft|refine|best_of|vote``) and
``x-perfics-samples-planned`` (1 unless ``best_of`` or ``vote``) say how the answering model's
plan spends its compute, beside ``x-perfics-rounds-planned``.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.results import Outcome
from routing.cost import format_usd
from routing.decision import Decision


def decision_headers(
    decision: Decision, request_id: str, *, model: str, fallbacks: Sequence[str]
) -> dict[str, str]:
    declarations = decision.declarations
    candidate = decision.candidate(model)
    headers = {
        "x-request-id": request_id,
        "x-perfics-model": model,
        "x-perfics-task": declarations.task,
        "x-perfics-task-source": declarations.task_source,
        "x-perfics-score": f"{candidate.score:.6f}",
        "x-perfics-rounds-planned": str(candidate.rounds),
        "x-perfics-technique": candidate.technique,
        "x-perfics-samples-planned": str(candidate.samples),
        "x-perfics-estimated-cost-usd": format_usd(candidate.estimated_cost_usd),
        "x-perfics-fallbacks": str(len(fallbacks)),
    }
    if declarations.budget_usd is not None:
        headers["x-perfics-budget-usd"] = format_usd(declarations.budget_usd)
    if decision.sends_tools:
        headers["x-perfics-tools"] = "offered" if candidate.offers_tools else "not-offered"
    return headers


def outcome_headers(outcome: Outcome) -> dict[str, str]:
    headers = {
        "x-perfics-rounds": str(outcome.rounds),
        "x-perfics-stop-reason": outcome.stop_reason,
        "x-perfics-cost-usd": format_usd(outcome.cost_usd),
        "x-perfics-prompt-tokens": str(outcome.usage.prompt_tokens),
        "x-perfics-completion-tokens": str(outcome.usage.completion_tokens),
        "x-perfics-latency-ms": str(outcome.latency_ms),
    }
    if outcome.reference_cost_usd is not None:
        headers["x-perfics-reference-cost-usd"] = format_usd(outcome.reference_cost_usd)
    selected_by = outcome.choices[0].selected_by
    if selected_by is not None:
        headers["x-perfics-selected-by"] = selected_by
    return headers
