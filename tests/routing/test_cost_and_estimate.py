"""Prices, USD formatting, the token estimate and the PeRFICS formula."""

from __future__ import annotations

import math

import pytest

from routing.cost import Prices, cost_usd, format_usd
from routing.estimate import TokenEstimate, answer_tokens, estimate_prompt_tokens
from routing.perfics import perfics_score
from routing.policy import Weights


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1e-9, "0.000000001"),
        (1e-12, "0.000000000001"),
        (4e-13, "0"),  # below 12 decimals
        (6e-13, "0.000000000001"),  # rounds to 12 decimals
        (0.000344, "0.000344"),
        (1.5, "1.5"),
        (2.0, "2"),
        (123456.25, "123456.25"),
        (1 / 3, "0.333333333333"),
    ],
)
def test_format_usd(amount: float, text: str) -> None:
    assert format_usd(amount) == text
    assert "e" not in text.lower()


def test_format_usd_rejects_non_finite() -> None:
    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError, match="not a finite amount"):
            format_usd(bad)


def test_cost_usd() -> None:
    # (172 * 1.0 + 86 * 2.0) / 1e6 = 344 / 1e6
    assert cost_usd(Prices(1.0, 2.0), 172, 86) == 0.000344
    assert cost_usd(Prices(0.0, 0.0), 10**6, 10**6) == 0.0


def test_prompt_estimate_per_message() -> None:
    # ceil(len / 4) + 4 per message: "hello" 5 chars -> 2 + 4; 8 chars -> 2 + 4; "" -> 0 + 4
    assert estimate_prompt_tokens([{"role": "user", "content": "hello"}]) == 6
    assert estimate_prompt_tokens([{"role": "user", "content": "12345678"}]) == 6
    assert estimate_prompt_tokens([{"role": "user", "content": ""}]) == 4
    assert estimate_prompt_tokens([]) == 0
    assert (
        estimate_prompt_tokens(
            [
                {"role": "system", "content": "x" * 9},  # 3 + 4
                {"role": "assistant", "content": None, "tool_calls": []},  # 0 + 4
                {"role": "user"},  # 0 + 4
            ]
        )
        == 15
    )


def test_prompt_estimate_joins_text_parts_and_ignores_others() -> None:
    content = [
        {"type": "text", "text": "abc"},
        {"type": "image_url", "image_url": {"url": "data:..." * 100}},
        {"type": "text", "text": "defgh"},
    ]
    # "abcdefgh" = 8 chars -> 2 + 4
    assert estimate_prompt_tokens([{"role": "user", "content": content}]) == 6


def test_token_estimate_formulas() -> None:
    estimate = TokenEstimate(p=100, a=200, k=100, t=50)
    # in(r) = p + r(2p + 2a + k + 2t) = 100 + 800 r; out(r) = a + r(k + a) = 200 + 300 r
    assert [estimate.input_tokens(r) for r in range(3)] == [100, 900, 1700]
    assert [estimate.output_tokens(r) for r in range(3)] == [200, 500, 800]


def test_answer_tokens() -> None:
    assert answer_tokens(None, 300) == 300
    assert answer_tokens(100, 300) == 100
    assert answer_tokens(1000, 300) == 300


def test_perfics_score_by_hand() -> None:
    weights = Weights()
    # Q0 6, Q1 7, C 0.0019: 0.7 + 0.5 * (1/6) - 0.05 * log10(1.9) = 0.7693956
    assert perfics_score(6.0, 7.0, 0.0019, weights, 0.001) == pytest.approx(0.7693956, abs=1e-7)
    # at the reference cost the cost term vanishes: 0.6
    assert perfics_score(6.0, 6.0, 0.001, weights, 0.001) == pytest.approx(0.6, abs=1e-15)
    # zero cost floors at 1e-12: 0.5 - 0.05 * (-9) = 0.95
    assert perfics_score(5.0, 5.0, 0.0, weights, 0.001) == pytest.approx(0.95, abs=1e-12)
    # Q0 = 0: no refinement term: 0.3 - 0 = 0.3
    assert perfics_score(0.0, 3.0, 0.001, weights, 0.001) == pytest.approx(0.3, abs=1e-15)
    # custom weights, C 0.01 = 10x the reference:
    #   Q 5 -> 5:  2 * 0.5 + 1 * 0     - 0.1 * log10(10) = 0.9
    #   Q 5 -> 6:  2 * 0.6 + 1 * (1/5) - 0.1 * log10(10) = 1.3
    custom = Weights(performance=2.0, refinement=1.0, cost=0.1)
    assert perfics_score(5.0, 5.0, 0.01, custom, 0.001) == pytest.approx(0.9, abs=1e-12)
    assert perfics_score(5.0, 6.0, 0.01, custom, 0.001) == pytest.approx(1.3, abs=1e-12)
