"""Backends, built from the table of ``routing.backend_options.BACKENDS``, which names each
backend's implementing class. A backend's module (and its third-party client) is imported only
when a policy names it, so a policy without litellm models never imports litellm.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from routing.backend_options import BACKENDS

from .base import Backend

if TYPE_CHECKING:
    from routing.policy import ModelSpec


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """Service-wide settings a backend needs besides its own policy entry."""

    queue_size: int = 16


def build_backend(spec: ModelSpec, settings: BackendSettings) -> Backend:
    """A new, not yet started backend for one catalog model: the class the backend table
    (``routing.backend_options.BACKENDS``) names, imported on first use."""
    module, _, name = BACKENDS[spec.backend].implementation.partition(":")
    implementation: BackendFactory = getattr(importlib.import_module(module), name)
    return implementation.from_policy(spec, settings)


class BackendFactory(Protocol):
    @classmethod
    def from_policy(cls, spec: ModelSpec, settings: BackendSettings) -> Backend: ...
