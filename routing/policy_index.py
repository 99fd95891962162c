"""What planning needs of a policy, computed once when the policy is loaded, so that a plan
costs no pydantic work and no repeated arithmetic: prices per model, the request-independent
part of the PeRFICS score per (model, task, rounds) and per (model, task, technique, samples),
and the classifier's patterns.

``template_tokens`` (``t``) is measured from the refinement prompts themselves with the
contract's estimate, and the policy's ``refinement.template_tokens`` is a floor: a policy that
understates its prompts cannot make the planner understate a round's cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from routing.backend_options import BACKENDS
from routing.cost import Prices
from routing.estimate import template_tokens
from routing.perfics import quality_terms
from routing.policy import ModelSpec, Policy, Weights
from routing.techniques import Technique, place

# A selection technique's planning row: (its ``routing.techniques.place``, samples k, the
# score's quality part, whether ``k (p + a)`` scoring prefills count).
SampledOption = tuple[int, int, float, bool]


@dataclass(frozen=True, slots=True)
class RatedModel:
    """A model with quality for a task. ``terms[r]`` is the score's performance and refinement
    part for ``r`` rounds, for every ``r <= min(task.max_rounds, len(quality) - 1)``;
    ``sampled`` holds ``(technique, k, Q)`` for every listed ``best_of`` and ``vote`` size with
    ``k <= task.max_samples``, and ``options`` their planning rows, in the same order."""

    model: str
    context_window: int
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    quality: tuple[float, ...]
    terms: tuple[float, ...]
    sampled: tuple[tuple[Technique, int, float], ...] = ()
    options: tuple[SampledOption, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskIndex:
    """One task: its rated models in catalog order (and by id; ``rows`` holds the planner's
    fields as plain tuples, which its loop unpacks faster than attributes), the planning rows
    of the techniques each model lists (``options``, by id: only models with any), the models
    without quality for it, the most rounds any model may plan, and the classifier pattern
    (None: no keywords)."""

    name: str
    max_rounds: int
    answer_tokens: int
    rated: tuple[RatedModel, ...]
    rows: tuple[tuple[str, int, float, float, tuple[float, ...], int], ...]
    by_model: dict[str, RatedModel]
    options: dict[str, tuple[SampledOption, ...]]
    unrated: tuple[str, ...]
    most_rounds: int
    pattern: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class PolicyIndex:
    """Per-policy planning data; ``score = terms[r] - cost_term(C)`` (``routing.perfics``).
    ``scorers``: the models whose backend measures likelihood, so their ``best_of`` samples
    are ranked by it (``scored``)."""

    models: dict[str, ModelSpec]
    prices: dict[str, Prices]
    capabilities: dict[str, frozenset[str]]
    tasks: dict[str, TaskIndex]
    critique_tokens: int
    template_tokens: int
    weights: Weights
    cost_reference_usd: float
    refuse_unoffered_tools: bool = False
    scorers: frozenset[str] = frozenset()

    def scored(self, model: str, technique: str) -> bool:
        """Whether ``technique``'s samples on ``model`` are scored: ``k (p + a)`` more tokens
        in (``routing.estimate.TokenEstimate.tokens``)."""
        return technique == "best_of" and model in self.scorers


def index_of(policy: Policy) -> PolicyIndex:
    """``policy``'s planning data, built on first use and kept with the policy (the loader
    builds it at load, so no request pays for it)."""
    found = policy._index
    if isinstance(found, PolicyIndex):
        return found
    index = build_index(policy)
    policy._index = index
    return index


def build_index(policy: Policy) -> PolicyIndex:
    """Precompute ``policy``'s planning data. The policy must be valid (cross-checked)."""
    models = {spec.id: spec for spec in policy.models}
    prices = {spec.id: spec.prices() for spec in policy.models}
    scorers = frozenset(spec.id for spec in policy.models if BACKENDS[spec.backend].scores)
    tasks: dict[str, TaskIndex] = {}
    for name, task in policy.tasks.items():
        rated: list[RatedModel] = []
        unrated: list[str] = []
        for spec in policy.models:
            quality = spec.quality_for(name)
            if quality is None:
                unrated.append(spec.id)
                continue
            top = min(task.max_rounds, len(quality) - 1)
            model_prices = prices[spec.id]
            sampled = tuple(
                entry for entry in spec.sampled_quality(name) if entry[1] <= task.max_samples
            )
            rated.append(
                RatedModel(
                    model=spec.id,
                    context_window=spec.context_window,
                    input_usd_per_mtok=model_prices.input_usd_per_mtok,
                    output_usd_per_mtok=model_prices.output_usd_per_mtok,
                    quality=quality,
                    terms=tuple(
                        quality_terms(quality[0], quality[r], policy.weights)
                        for r in range(top + 1)
                    ),
                    sampled=sampled,
                    options=tuple(
                        (
                            place(technique, 0, k),
                            k,
                            quality_terms(quality[0], q, policy.weights),
                            technique == "best_of" and spec.id in scorers,
                        )
                        for technique, k, q in sampled
                    ),
                )
            )
        tasks[name] = TaskIndex(
            name=name,
            max_rounds=task.max_rounds,
            answer_tokens=task.answer_tokens,
            rated=tuple(rated),
            rows=tuple(
                (
                    entry.model,
                    entry.context_window,
                    entry.input_usd_per_mtok,
                    entry.output_usd_per_mtok,
                    entry.terms,
                    len(entry.terms) - 1,
                )
                for entry in rated
            ),
            options={entry.model: entry.options for entry in rated if entry.options},
            by_model={entry.model: entry for entry in rated},
            unrated=tuple(unrated),
            most_rounds=max((len(entry.terms) - 1 for entry in rated), default=0),
            pattern=keyword_pattern(task.keywords),
        )
    return PolicyIndex(
        models=models,
        prices=prices,
        capabilities={spec.id: spec.capability_set() for spec in policy.models},
        tasks=tasks,
        critique_tokens=policy.refinement.critique_max_tokens,
        template_tokens=max(
            policy.refinement.template_tokens,
            template_tokens(
                policy.refinement.critique_prompt.format(stop_phrase=policy.refinement.stop_phrase),
                policy.refinement.rewrite_prompt,
            ),
        ),
        weights=policy.weights,
        cost_reference_usd=policy.cost_reference_usd,
        refuse_unoffered_tools=policy.tools.unsupported == "refuse",
        scorers=scorers,
    )


def keyword_pattern(keywords: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any keyword as whole words: not preceded or
    followed by a word character; the words of a phrase separated by any whitespace. Longer
    keywords are tried first, so ``machine learning`` wins over ``learning``."""
    if not keywords:
        return None
    alternatives = sorted(
        {r"\s+".join(re.escape(word) for word in keyword.split()) for keyword in keywords},
        key=lambda alternative: (-len(alternative), alternative),
    )
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
