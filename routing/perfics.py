"""The PeRFICS score (Performance, Refinement and Inference Cost Score), per
docs/architecture.md ("PeRFICS")::

    PeRFICS = w_perf * Q_r / 10
            + w_refine * (Q_r - Q_0) / Q_0            (0 when Q_0 is 0)
            - w_cost * log10(max(C_r, 1e-12) / cost_reference_usd)

Higher is better. The score is separate from the decision (``routing.planner``).
"""

from __future__ import annotations

import math
from typing import Protocol

COST_FLOOR_USD = 1e-12


class ScoreWeights(Protocol):
    """What the score needs of the policy's ``weights``."""

    @property
    def performance(self) -> float: ...
    @property
    def refinement(self) -> float: ...
    @property
    def cost(self) -> float: ...


def quality_terms(q0: float, qr: float, weights: ScoreWeights) -> float:
    """The performance and refinement terms: the part of the score that does not depend on
    the request."""
    refinement = (qr - q0) / q0 if q0 != 0 else 0.0
    return weights.performance * qr / 10 + weights.refinement * refinement


def cost_term(cost_usd: float, weights: ScoreWeights, cost_reference_usd: float) -> float:
    """``w_cost * log10(max(C, 1e-12) / cost_reference_usd)``: subtracted from the score."""
    return weights.cost * math.log10(max(cost_usd, COST_FLOOR_USD) / cost_reference_usd)


def perfics_score(
    q0: float, qr: float, cost_usd: float, weights: ScoreWeights, cost_reference_usd: float
) -> float:
    """PeRFICS for quality ``q0`` without refinement, ``qr`` after ``r`` rounds, at an
    estimated ``cost_usd``."""
    return quality_terms(q0, qr, weights) - cost_term(cost_usd, weights, cost_reference_usd)
