"""A loaded policy and the started backends of its models, swapped whole on reload.

A request takes the current ``Runtime`` when it starts and keeps it to the end, so a reload
never changes the policy under a request in flight. A reload builds the new runtime beside the
old one, reusing the started backend of every model whose entry did not change (a loaded
llama.cpp model is not loaded twice), and closes the backends only the old policy used once
no request holds the old runtime any more.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from proxy.backends import BackendSettings, build_backend
from proxy.backends.base import Backend
from proxy.refine import RefinementPrompts
from proxy.settings import Settings
from routing.cost import Prices
from routing.policy import Policy
from routing.policy_loader import load_policy

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class Runtime:
    policy: Policy
    backends: Mapping[str, Backend]
    prompts: RefinementPrompts
    reference_prices: Prices | None
    source: str
    api_key: str | None = None
    admin_key: str | None = None
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def ready_models(self) -> frozenset[str]:
        return frozenset(model for model, backend in self.backends.items() if backend.ready)

    def acquire(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def drained(self) -> None:
        if self.in_flight:
            await self._idle.wait()


async def build_runtime(
    settings: Settings,
    *,
    previous: Runtime | None = None,
    backends: Mapping[str, Backend] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Runtime:
    """Load ``settings.policy`` and start its backends. ``backends`` injects ready-made ones by
    model id (tests use scripted fakes); others are built from the policy, or reused from
    ``previous`` when their policy entry is unchanged. Raises ``PolicyError`` on a bad file,
    leaving ``previous`` untouched. Keys and the queue size come from ``settings`` when set
    there, else from the policy's ``server`` / ``admin`` sections (keys read from the
    environment variables they name)."""
    policy = await asyncio.to_thread(load_policy, settings.policy)
    backend_settings = BackendSettings(queue_size=settings.queue_size or policy.server.queue_size)
    reused: dict[str, Backend] = {}
    if previous is not None:
        for spec in policy.models:
            old = previous.backends.get(spec.id)
            # A backend that failed to start is built afresh, so a reload retries it.
            if old is not None and old.ready and _same_entry(previous.policy, policy, spec.id):
                reused[spec.id] = old
    started: dict[str, Backend] = {}
    for spec in policy.models:
        if backends is not None and spec.id in backends:
            started[spec.id] = backends[spec.id]
        elif spec.id in reused:
            started[spec.id] = reused[spec.id]
        else:
            backend = build_backend(spec, backend_settings)
            try:
                await backend.start()
            except Exception:
                log.exception("backend.start_failed", model=spec.id)
            started[spec.id] = backend
    refinement = policy.refinement
    return Runtime(
        policy=policy,
        backends=started,
        prompts=RefinementPrompts(
            critique=refinement.critique_prompt,
            rewrite=refinement.rewrite_prompt,
            stop_phrase=refinement.stop_phrase,
            critique_max_tokens=refinement.critique_max_tokens,
            accept=refinement.accept,
        ),
        reference_prices=_reference_prices(policy),
        source=settings.policy,
        api_key=settings.api_key or _from_env(policy.server.api_key_env, environ),
        admin_key=settings.admin_key or _from_env(policy.admin.api_key_env, environ),
    )


def _from_env(name: str | None, environ: Mapping[str, str]) -> str | None:
    return (environ.get(name) or None) if name else None


async def retire(old: Runtime, live: Callable[[], Iterable[Runtime]]) -> None:
    """Close the backends only ``old`` uses, once its last request has finished. ``live``
    gives the runtimes still serving (the current one, and older ones still draining), whose
    backends stay open."""
    await old.drained()
    kept = {id(backend) for runtime in live() for backend in runtime.backends.values()}
    for model, backend in old.backends.items():
        if id(backend) not in kept:
            kept.add(id(backend))
            await backend.aclose()
            log.info("backend.closed", model=model)


async def close_runtime(runtime: Runtime) -> None:
    for backend in runtime.backends.values():
        await backend.aclose()


def _same_entry(old: Policy, new: Policy, model_id: str) -> bool:
    try:
        return old.model(model_id) == new.model(model_id)
    except Exception:
        return False


def _reference_prices(policy: Policy) -> Prices | None:
    reference = policy.reference_model
    if reference is None:
        return None
    if reference.input_usd_per_mtok is not None and reference.output_usd_per_mtok is not None:
        return Prices(reference.input_usd_per_mtok, reference.output_usd_per_mtok)
    try:
        from proxy.reference_prices import litellm_reference_prices
    except ImportError:
        return None
    found = litellm_reference_prices(reference.id)
    return Prices(*found) if found is not None else None
