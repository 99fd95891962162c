"""Backends, found through an explicit registry keyed by the policy's ``backend`` name.

Each factory imports its third-party client lazily, so a policy that names no litellm model
never imports litellm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import Backend

if TYPE_CHECKING:
    from routing.policy import ModelSpec


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """Service-wide settings a backend needs besides its own policy entry."""

    queue_size: int = 16


def _llamacpp(spec: ModelSpec, settings: BackendSettings) -> Backend:
    from .llamacpp import LlamaCppBackend

    return LlamaCppBackend(spec, queue_size=settings.queue_size)


def _openai(spec: ModelSpec, settings: BackendSettings) -> Backend:
    from .openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(spec)


def _vllm(spec: ModelSpec, settings: BackendSettings) -> Backend:
    from .openai_compat import VLLMBackend

    return VLLMBackend(spec)


def _litellm(spec: ModelSpec, settings: BackendSettings) -> Backend:
    from .litellm_backend import LiteLLMBackend

    return LiteLLMBackend(spec)


BACKENDS: dict[str, Callable[[ModelSpec, BackendSettings], Backend]] = {
    "llamacpp": _llamacpp,
    "openai": _openai,
    "vllm": _vllm,
    "litellm": _litellm,
}


def build_backend(spec: ModelSpec, settings: BackendSettings) -> Backend:
    """A new, not yet started backend for one catalog model."""
    return BACKENDS[spec.backend](spec, settings)
