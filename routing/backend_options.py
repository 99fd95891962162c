"""The backends a policy may name, in one table (``BACKENDS``): for each, its model options
(a model's ``options``, validated by its ``backend``), its default capabilities, whether it
takes ``api_base``, the class that implements it in the proxy, whether that class can score an
answer's likelihood, and which sampling ``defaults`` it can apply. Nothing else lists backend
names: the policy schema, its checks, the planner and ``proxy.backends.build_backend`` all read
this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from routing.policy_types import NonNegative, PolicyModel, Positive, PositiveCount
from routing.techniques import SAMPLING_PARAMS, SamplingParam


class LlamaCppOptions(PolicyModel):
    """The embedded llama.cpp backend. ``n_threads`` None: half the logical cores;
    ``chat_format`` None: the GGUF's own template (``chatml`` and ``gemma`` override it);
    ``seed``: used when a request sends none."""

    n_threads: PositiveCount | None = None
    n_batch: PositiveCount = 512
    chat_format: Literal["chatml", "gemma"] | None = None
    seed: int | None = None


class OpenAIOptions(PolicyModel):
    """The OpenAI-compatible HTTP backend (``openai`` and ``vllm``); ``metrics_cache_s`` only
    matters for ``vllm`` (how long its ``/metrics`` queue depth is reused)."""

    connect_timeout_s: Positive = 5.0
    read_timeout_s: Positive = 120.0
    max_connections: PositiveCount = 100
    retry_down_after_s: NonNegative = 10.0
    metrics_cache_s: NonNegative = 1.0


class LiteLLMOptions(PolicyModel):
    """The litellm backend; ``params`` are passed through to ``litellm.acompletion``."""

    timeout_s: Positive = 120.0
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _no_reserved_keys(
        cls, params: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        taken = sorted(set(params) & _LITELLM_RESERVED)
        if taken:
            raise ValueError(f"set by the proxy, not in params: {', '.join(taken)}")
        return params


# Arguments the litellm backend passes itself (the request, the policy entry, the stream).
_LITELLM_RESERVED = frozenset(
    {"model", "messages", "stream", "stream_options", "timeout", "api_base", "api_key"}
)


Capability = Literal["tools", "json_schema", "logprobs", "vision", "embeddings"]
CAPABILITIES: tuple[Capability, ...] = ("tools", "json_schema", "logprobs", "vision", "embeddings")
"""What a request may use that not every model can serve: ``tools`` (``tools`` /
``tool_choice``), ``json_schema`` (a JSON ``response_format``), ``logprobs``, ``vision`` (image
parts), ``embeddings`` (``POST /v1/embeddings``; never a backend's default: a model serves
embeddings only where its entry lists it)."""


CAPABILITY_PARAMS: dict[str, str] = {
    "tools": "tools",
    "json_schema": "response_format",
    "logprobs": "logprobs",
    "vision": "messages",
    "embeddings": "model",
}
"""The request field that asks for each capability (the ``param`` of its 400)."""

BackendOptions = LlamaCppOptions | OpenAIOptions | LiteLLMOptions


@dataclass(frozen=True, slots=True)
class BackendKind:
    """One backend: ``options`` validates a model's ``options``; ``capabilities`` apply when a
    model lists none; ``api_base`` is required, optional or forbidden; ``implementation`` is
    ``module:Class`` in the proxy (read there, never imported here). ``scores``: the class is a
    ``proxy.backends.base.Scorer`` (it measures an answer's likelihood, so ``best_of`` ranks
    passing samples by it, and the planner counts those prefills); ``sampling``: the fields of
    a model's ``defaults`` it can apply."""

    options: type[BackendOptions]
    capabilities: tuple[Capability, ...]
    api_base: Literal["required", "optional", "forbidden"]
    implementation: str
    scores: bool = False
    sampling: tuple[SamplingParam, ...] = ("temperature", "top_p", "max_tokens")


BACKENDS: dict[str, BackendKind] = {
    # The embedded model: output held to a grammar, logits read from llama.cpp; tools only
    # when a policy lists them (for a model trained to call tools). Any OpenAI-compatible
    # server takes temperature, top_p and max_tokens; vLLM and llama.cpp also top_k, min_p
    # and a repetition penalty.
    "llamacpp": BackendKind(
        LlamaCppOptions,
        ("json_schema", "logprobs"),
        "forbidden",
        "proxy.backends.llamacpp:LlamaCppBackend",
        scores=True,
        sampling=SAMPLING_PARAMS,
    ),
    "openai": BackendKind(
        OpenAIOptions,
        ("tools", "json_schema", "logprobs"),
        "required",
        "proxy.backends.openai_compat:OpenAICompatBackend",
    ),
    "vllm": BackendKind(
        OpenAIOptions,
        ("tools", "json_schema", "logprobs"),
        "required",
        "proxy.backends.openai_compat:VLLMBackend",
        sampling=SAMPLING_PARAMS,
    ),
    "litellm": BackendKind(
        LiteLLMOptions,
        ("tools", "json_schema"),
        "optional",
        "proxy.backends.litellm_backend:LiteLLMBackend",
    ),
}
