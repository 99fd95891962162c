"""A request that was never sent, described by its declarations: what ``perfics route`` and the
dashboard's plan form plan for. Both build their facts here, so they plan alike.

``task``, ``budget_usd``, ``max_rounds`` and ``max_samples`` count as declared by header (as
text, validated by the declarations as a header would be); ``prompt`` is estimated and goes to
the keyword classifier; without it, ``prompt_tokens`` is the prompt's size.
"""

from __future__ import annotations

from routing.decision import RequestFacts
from routing.estimate import estimate_prompt_tokens


def hypothetical_facts(
    *,
    task: str | None = None,
    budget_usd: str | None = None,
    max_rounds: str | None = None,
    max_samples: str | None = None,
    prompt: str | None = None,
    prompt_tokens: int | None = None,
    max_tokens: int | None = None,
    model: str = "auto",
    needs: frozenset[str] = frozenset(),
) -> RequestFacts:
    headers = {
        name: value
        for name, value in (
            ("x-perfics-task", task),
            ("x-perfics-budget-usd", budget_usd),
            ("x-perfics-max-rounds", max_rounds),
            ("x-perfics-max-samples", max_samples),
        )
        if value is not None
    }
    if prompt is not None:
        prompt_tokens = estimate_prompt_tokens([{"role": "user", "content": prompt}])
    return RequestFacts(
        model=model,
        headers=headers,
        perfics=None,
        last_user_text=prompt or "",
        prompt_tokens=prompt_tokens or 0,
        max_tokens=max_tokens,
        needs=needs,
    )
