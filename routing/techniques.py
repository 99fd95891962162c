"""Selection techniques in the policy: a task's quality per technique, the ``selection``
section and a model's sampling ``defaults`` (docs/architecture.md, "Selection techniques").

A plan spends a request's extra compute one way: ``draft`` (the first answer alone), ``refine``
(``r >= 1`` rounds of critique and rewrite), ``best_of`` (``k`` samples, the one that passes
the request's own checks) or ``vote`` (``k`` samples, the largest group of equal answers).
``TECHNIQUES`` lists them in the order that breaks ties between equally scored plans of equal
cost.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from routing.policy_types import PolicyModel, Positive, PositiveCount, QualityList, Score

Technique = Literal["draft", "refine", "best_of", "vote"]
TECHNIQUES: tuple[Technique, ...] = ("draft", "refine", "best_of", "vote")
SELECTION_TECHNIQUES: tuple[Technique, ...] = ("best_of", "vote")
"""The techniques that make ``k`` samples and keep one."""

MIN_SAMPLES = 2

SAMPLED_PLACE = 1 << 20
"""Where ``best_of`` and ``vote`` places start: above any round count a quality list holds."""


def place(technique: Technique, rounds: int, samples: int) -> int:
    """A plan's place among plans of equal score and cost, as one int that sorts as the
    contract breaks ties (technique in ``TECHNIQUES``' order, then fewer rounds or samples):
    its rounds for ``draft`` (0) and ``refine``, else ``2**20 * rank + samples``."""
    if technique in SELECTION_TECHNIQUES:
        return SAMPLED_PLACE * TECHNIQUES.index(technique) + samples
    return rounds


def unplace(found: int) -> tuple[Technique, int, int]:
    """``(technique, rounds, samples)`` of a ``place``."""
    if found < SAMPLED_PLACE:
        return ("refine" if found else "draft"), found, 1
    return TECHNIQUES[found // SAMPLED_PLACE], 0, found % SAMPLED_PLACE


class TechniqueQuality(PolicyModel):
    """A task's quality per technique: ``refine`` is ``[Q_0, Q_1, ...]`` as a plain list would
    be (``refine[0]`` is the draft's ``Q_0``, required); ``best_of`` and ``vote`` map a sample
    count ``k >= 2`` to ``Q_{technique,k}``."""

    refine: QualityList
    best_of: dict[int, Score] = Field(default_factory=dict)
    vote: dict[int, Score] = Field(default_factory=dict)

    @field_validator("best_of", "vote")
    @classmethod
    def _sample_counts(cls, table: dict[int, float]) -> dict[int, float]:
        small = sorted(k for k in table if k < MIN_SAMPLES)
        if small:
            raise ValueError(
                f"sample counts (the keys) must be at least {MIN_SAMPLES}, got "
                f"{', '.join(map(str, small))}"
            )
        return table

    def sampled(self) -> tuple[tuple[Technique, int, float], ...]:
        """``(technique, k, Q)`` for every listed size: ``best_of`` before ``vote``, each by
        ``k``."""
        tables: tuple[tuple[Technique, dict[int, float]], ...] = (
            ("best_of", self.best_of),
            ("vote", self.vote),
        )
        return tuple((technique, k, table[k]) for technique, table in tables for k in sorted(table))


class Selection(PolicyModel):
    """How ``best_of`` and ``vote`` make and judge their samples (the pipeline reads them).
    ``temperature``: the samples after the draft are drawn at it, each with its own seed.
    ``checks``: whether ``best_of`` runs the code examples a prompt states against each sample
    (in the calibration graders' sandbox); false for operators who will not run model-written
    code at all (JSON schemas and tool parameters are still checked: nothing runs).
    ``time_limit_s``: how long one request's code checks may run altogether, counted from
    the first; a sample whose examples the limit leaves unrun fails them."""

    temperature: Annotated[float, Field(ge=0, le=2)] = 0.8
    checks: bool = True
    time_limit_s: Positive = 10.0


SamplingParam = Literal["temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens"]
SAMPLING_PARAMS: tuple[SamplingParam, ...] = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "max_tokens",
)


class SamplingDefaults(PolicyModel):
    """A model's sampling when the client sends none, field by field (a client's own value
    wins; a field left out here is the backend's own default). ``temperature`` 0-2, ``top_p``
    in (0, 1], ``top_k`` at least 1, ``min_p`` 0-1, ``repeat_penalty`` above 0 (1 is none;
    vLLM's ``repetition_penalty``), ``max_tokens`` at least 1 (an answer the client did not
    cap stops there, not at the end of the context). Which of them a backend can apply is
    ``routing.backend_options.BACKENDS[...].sampling``."""

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: PositiveCount | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    repeat_penalty: Positive | None = None
    max_tokens: PositiveCount | None = None

    def given(self) -> dict[SamplingParam, float | int]:
        """The fields set, by name."""
        fields: dict[SamplingParam, float | int | None] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
        }
        return {name: value for name, value in fields.items() if value is not None}
