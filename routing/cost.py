"""Prices and USD arithmetic.

``format_usd`` is the one USD formatting used across the project (headers, JSON, CLI): a plain
decimal with no exponent, at most 12 decimal places, trailing zeros stripped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million input (prompt) and output (completion) tokens."""

    input_usd_per_mtok: float
    output_usd_per_mtok: float


def cost_usd(prices: Prices, input_tokens: int, output_tokens: int) -> float:
    """The cost in USD of ``input_tokens`` in and ``output_tokens`` out at ``prices``."""
    return (
        input_tokens * prices.input_usd_per_mtok + output_tokens * prices.output_usd_per_mtok
    ) / MTOK


def format_usd(x: float) -> str:
    """``x`` as a plain decimal string: no exponent, at most 12 decimal places (rounded), trailing
    zeros stripped; ``0`` for zero (and for values that round to zero). Raises ``ValueError``
    for NaN and infinities."""
    if not math.isfinite(x):
        raise ValueError(f"not a finite amount: {x!r}")
    text = f"{x:.12f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
