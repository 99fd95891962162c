"""The policy schema used directly: prices, quality lookup, options, strictness."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from routing.cost import Prices
from routing.errors import UnknownModel
from routing.policy import (
    Hardware,
    LiteLLMOptions,
    LlamaCppOptions,
    ModelSpec,
    OpenAIOptions,
    Policy,
)


def spec(**overrides: Any) -> ModelSpec:
    values: dict[str, Any] = {
        "id": "m",
        "backend": "llamacpp",
        "model": "bundled:smollm2-135m",
        "context_window": 2048,
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 2.0,
    }
    values.update(overrides)
    return ModelSpec.model_validate(values)


def test_prices_direct_and_from_hardware() -> None:
    assert spec().prices() == Prices(1.0, 2.0)
    hardware = spec(
        input_usd_per_mtok=None,
        output_usd_per_mtok=None,
        hardware={"usd_per_hour": 0.36, "prefill_tokens_per_s": 1000, "decode_tokens_per_s": 100},
    )
    # 0.36 / 3600 = 1e-4 USD/s; / 1000 tok/s * 1e6 = 0.1; / 100 tok/s * 1e6 = 1.0
    prices = hardware.prices()
    assert prices.input_usd_per_mtok == pytest.approx(0.1, rel=1e-12)
    assert prices.output_usd_per_mtok == pytest.approx(1.0, rel=1e-12)
    assert isinstance(hardware.hardware, Hardware)


def test_unpriced_spec_alone_is_allowed_but_cannot_price() -> None:
    unpriced = spec(input_usd_per_mtok=None, output_usd_per_mtok=None)
    with pytest.raises(ValueError, match="no pricing"):
        unpriced.prices()


def test_quality_for_task_then_default() -> None:
    model = spec(quality={"coding": [2.0, 3.0], "default": [4.0]})
    assert model.quality_for("coding") == (2.0, 3.0)
    assert model.quality_for("general") == (4.0,)
    assert spec(quality={"coding": [1.0]}).quality_for("general") is None


def test_options_follow_the_backend() -> None:
    assert isinstance(spec().options, LlamaCppOptions)
    remote = spec(backend="vllm", api_base="http://h:8000/v1")
    assert isinstance(remote.options, OpenAIOptions)
    assert remote.api_base == ("http://h:8000/v1",)
    assert remote.options.metrics_cache_s == 1.0
    many = spec(
        backend="openai", api_base=["http://a/v1", "http://b/v1"], options={"max_connections": 5}
    )
    assert many.api_base == ("http://a/v1", "http://b/v1")
    assert isinstance(many.options, OpenAIOptions)
    assert many.options.max_connections == 5
    hosted = spec(backend="litellm", model="anthropic/claude", options={"params": {"top_k": 5}})
    assert isinstance(hosted.options, LiteLLMOptions)
    assert hosted.options.params == {"top_k": 5}
    with pytest.raises(ValidationError, match="read_timeout_s"):
        spec(options={"read_timeout_s": 5.0})
    with pytest.raises(ValidationError, match="takes OpenAIOptions"):
        spec(backend="openai", api_base="http://a/v1", options=LlamaCppOptions())


def test_strict_types_and_constructed_cross_checks() -> None:
    with pytest.raises(ValidationError):
        spec(context_window="2048")
    with pytest.raises(ValidationError):
        spec(context_window=True)
    with pytest.raises(ValidationError, match="URL"):
        spec(backend="openai", api_base="ftp://x")
    with pytest.raises(ValidationError, match="api_base"):
        spec(backend="openai")
    with pytest.raises(ValidationError, match="one way"):
        spec(hardware={"usd_per_hour": 1, "prefill_tokens_per_s": 1, "decode_tokens_per_s": 1})
    with pytest.raises(ValidationError):
        spec(quality={"default": [3.0, float("nan")]})


def test_policy_validated_directly_runs_the_cross_checks() -> None:
    base: dict[str, Any] = {
        "version": 1,
        "default_task": "general",
        "tasks": {"general": {"max_rounds": 1, "answer_tokens": 10}},
        "models": [spec().model_dump()],
    }
    policy = Policy.model_validate(base)
    assert policy.model("m").id == "m"
    with pytest.raises(UnknownModel) as caught:
        policy.model("x")
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    with pytest.raises(ValidationError, match="duplicate model id"):
        Policy.model_validate({**base, "models": [spec(), spec()]})
    with pytest.raises(ValidationError, match="unknown task 'nope'"):
        Policy.model_validate({**base, "default_task": "nope"})


def test_policy_is_frozen() -> None:
    model = spec()
    with pytest.raises(ValidationError):
        model.context_window = 5
