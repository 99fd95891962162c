"""Reference prices from litellm's local cost map, read without importing litellm."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy import reference_prices
from proxy.reference_prices import litellm_reference_prices

ROOT = Path(__file__).resolve().parents[2]


def test_known_model_prices_per_million_tokens() -> None:
    prices = litellm_reference_prices("gpt-4o")
    assert prices is not None
    assert prices == pytest.approx((2.5, 10.0))
    assert litellm_reference_prices("openai/gpt-4o") == prices


def test_unknown_model_is_none() -> None:
    assert litellm_reference_prices("no-such-model-anywhere") is None


def test_without_litellm_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    reference_prices._cost_map.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    try:
        assert litellm_reference_prices("gpt-4o") is None
    finally:
        reference_prices._cost_map.cache_clear()


def test_reading_prices_does_not_import_litellm() -> None:
    script = (
        "import sys; from proxy.reference_prices import litellm_reference_prices as p; "
        "print(p('gpt-4o'), 'litellm' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*filter(None, sys.path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["(2.5,", "10.0)", "False"], done.stderr[-1000:]
