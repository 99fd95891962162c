"""The keyword classifier: whole words, any case, most matches, ties by task order."""

from __future__ import annotations

import pytest

from routing.classify import classify_task
from routing.policy import Policy

from .conftest import policy_from

TIES = """
version: 1
default_task: general
tasks:
  general: {max_rounds: 0, answer_tokens: 10}
  coding:  {max_rounds: 0, answer_tokens: 10, keywords: [python, bug]}
  math:    {max_rounds: 0, answer_tokens: 10, keywords: [solve, machine learning]}
  ml:      {max_rounds: 0, answer_tokens: 10, keywords: [learning, python]}
models:
  - {id: m, backend: llamacpp, model: x, context_window: 10,
     input_usd_per_mtok: 0, output_usd_per_mtok: 0, quality: {default: [1.0]}}
"""


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Fix this PYTHON bug", "coding"),  # case-insensitive, 2 matches vs ml's 1
        ("pythonic code", None),  # not inside a longer word
        ("a bugfix", None),
        ("python", "coding"),  # 1 each for coding and ml: the first declared wins
        ("learning python, learning fast", "ml"),  # ml 3, coding 1
        ("Machine\n  Learning", "math"),  # a phrase over any whitespace; ml ties, declared later
        ("solve it", "math"),
        ("(python)", "coding"),  # punctuation is a word boundary
        ("", None),
        ("nothing to see", None),
    ],
)
def test_classify(text: str, task: str | None) -> None:
    assert classify_task(policy_from(TIES), text) == task


def test_keywords_with_symbols(two_models: Policy) -> None:
    assert classify_task(two_models, "is c++ faster") == "coding"
    assert classify_task(two_models, "tl;dr please") == "short"
    assert classify_task(two_models, "Unit  Test this") == "coding"
    assert classify_task(two_models, "unit tests") is None
