"""Prometheus metrics, with the official ``prometheus-client``.

One ``Metrics`` per app, on its own registry. With ``PROMETHEUS_MULTIPROC_DIR`` set (``perfics
serve --workers``), every process writes its values to that directory and ``exposition``
merges them with the client's multiprocess collector; gauges then say how processes combine
(``livemin``: a backend is up only where every live worker sees it up; ``livesum``: queued
requests add up). ``mark_process_dead`` is for the parent to call when a worker exits.

Label values are bounded by the policy and the code, never by what a client sends: ``model``
is a catalog id (the model that answered, or ``none`` before one was chosen, so an unknown
model name is never a label), ``task`` a policy task (or ``none``), ``status`` an HTTP status
the proxy sent (``499``: the client went away), ``stream`` ``true``/``false``, ``call``
``draft|critique|rewrite|review``, ``reason`` a stop reason. No request id, key or text.

Children of the per-request series are resolved once per (model, task, stream) and kept, so a
request costs a few dictionary lookups and counter increments (README "Monitoring" lists every
metric; ``benchmarks/README.md`` measures what they add). A scrape renders in a worker thread:
it takes milliseconds per thousand series, which the event loop should not wait for.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from proxy.backends.base import Backend
from proxy.multiproc import MULTIPROC_ENV
from routing.policy import Policy

NONE = "none"
CONTENT_TYPE = CONTENT_TYPE_LATEST
SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
ROUNDS_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10)


def multiprocess_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    return environ.get(MULTIPROC_ENV) or None


def mark_process_dead(pid: int, environ: Mapping[str, str] = os.environ) -> None:
    """Drop the live-gauge files of the exited worker ``pid`` (multiprocess mode only; a no-op
    without ``PROMETHEUS_MULTIPROC_DIR``). Call it from the parent when a worker exits."""
    path = multiprocess_dir(environ)
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


@runtime_checkable
class _Queued(Protocol):
    @property
    def waiting(self) -> int: ...


class _Replica(Protocol):
    url: str
    down_until: float | None


@runtime_checkable
class _Replicated(Protocol):
    @property
    def replicas(self) -> tuple[_Replica, ...]: ...


def policy_hash(policy: Policy) -> str:
    """The first 12 hex digits of the SHA-256 of the loaded policy, as validated (so a change
    to a comment does not change it, and any change to what is served does)."""
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:12]


@dataclass(slots=True)
class Series:
    """The children of one (model, task, stream): what a successful request touches."""

    ok: Any
    duration: Any
    ttft: Any
    planned: Any
    rounds: Any
    prompt: Any
    completion: Any
    cost: Any
    reference: Any
    stops: dict[str, Any] = field(default_factory=dict)
    calls: dict[str, tuple[Any, Any, Any, Any, Any]] = field(default_factory=dict)


class Metrics:
    """Every perfics metric, on one registry (module docstring)."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.multiprocess = multiprocess_dir(environ) is not None
        # No ``_created`` series: a quarter fewer lines per scrape, which the text format's
        # readers do not use.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry()
        if not self.multiprocess:
            from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        by_request = ["model", "task"]
        self.requests = Counter(
            "perfics_requests",
            "Chat completion requests by answering model (none before one was chosen), task, "
            "HTTP status and stream",
            ["model", "task", "status", "stream"],
            registry=registry,
        )
        self.duration = Histogram(
            "perfics_request_duration_seconds",
            "Time from a request's arrival to its last byte, successful requests",
            ["model", "task", "stream"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "perfics_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first answer chunk",
            by_request,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.rounds_planned = Histogram(
            "perfics_refinement_rounds_planned",
            "Refinement rounds planned per request",
            by_request,
            buckets=ROUNDS_BUCKETS,
            registry=registry,
        )
        self.rounds = Histogram(
            "perfics_refinement_rounds",
            "Refinement rounds performed per choice",
            by_request,
            buckets=ROUNDS_BUCKETS,
            registry=registry,
        )
        self.stops = Counter(
            "perfics_refinement_stops",
            "Why refinement stopped, per choice",
            [*by_request, "reason"],
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "perfics_prompt_tokens",
            "Prompt tokens over every internal call (failed attempts included)",
            by_request,
            registry=registry,
        )
        self.completion_tokens = Counter(
            "perfics_completion_tokens",
            "Completion tokens over every internal call (failed attempts included)",
            by_request,
            registry=registry,
        )
        self.cost = Counter(
            "perfics_cost_usd",
            "What requests cost in USD, as charged (x-perfics-cost-usd)",
            by_request,
            registry=registry,
        )
        self.reference_cost = Counter(
            "perfics_reference_cost_usd",
            "The same tokens priced at the policy's reference model, in USD",
            by_request,
            registry=registry,
        )
        self.fallbacks = Counter(
            "perfics_fallbacks",
            "Models that failed before another answered, by the failed model",
            ["model"],
            registry=registry,
        )
        self.calls = Counter(
            "perfics_calls",
            "Internal model calls by kind (draft, critique, rewrite, review)",
            [*by_request, "call"],
            registry=registry,
        )
        self.call_prompt_tokens = Counter(
            "perfics_call_prompt_tokens",
            "Prompt tokens of internal calls by kind",
            [*by_request, "call"],
            registry=registry,
        )
        self.call_completion_tokens = Counter(
            "perfics_call_completion_tokens",
            "Completion tokens of internal calls by kind",
            [*by_request, "call"],
            registry=registry,
        )
        self.call_cost = Counter(
            "perfics_call_cost_usd",
            "Cost of internal calls by kind, in USD",
            [*by_request, "call"],
            registry=registry,
        )
        self.call_duration = Histogram(
            "perfics_call_duration_seconds",
            "Duration of internal model calls by kind",
            ["model", "call"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.tools_not_offered = Counter(
            "perfics_tools_not_offered",
            "Requests answered in text without being shown their tools (the answering model "
            "cannot call tools, or its context cannot hold them), by that model",
            ["model"],
            registry=registry,
        )
        self.queue_rejections = Counter(
            "perfics_queue_rejections",
            "Requests refused with 429 because an embedded model's queue was full",
            ["model"],
            registry=registry,
        )
        self.backend_up = Gauge(
            "perfics_backend_up",
            "1 when the model's backend is ready to serve",
            ["model"],
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.replica_up = Gauge(
            "perfics_replica_up",
            "1 when the upstream replica is not marked down",
            ["model", "replica"],
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.queue_waiting = Gauge(
            "perfics_queue_waiting_requests",
            "Calls waiting for an embedded model",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.in_flight = Gauge(
            "perfics_requests_in_flight",
            "Chat completion requests being served",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.reloads = Counter(
            "perfics_policy_reloads",
            "Policy loads by result (success, failure)",
            ["result"],
            registry=registry,
        )
        self.last_reload = Gauge(
            "perfics_policy_last_reload_timestamp_seconds",
            "When the policy was last loaded, or last failed to load",
            ["result"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.policy_info = Gauge(
            "perfics_policy_info",
            "1 for the hash of the loaded policy",
            ["hash"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        # Keys are named by the operator (``perfics keys``), so their names are bounded labels.
        self.key_budget = Gauge(
            "perfics_key_budget_usd",
            "A key's budget for its period (keys with a budget)",
            ["key", "period"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.key_spent = Gauge(
            "perfics_key_spent_usd",
            "What a key has spent in its current budget period, from the store",
            ["key", "period"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self._series: dict[tuple[str, str, bool], Series] = {}
        self._statuses: dict[tuple[str, str, str, bool], Any] = {}
        self._hash: str | None = None
        self._gauged: set[tuple[str, ...]] = set()

    def keys(self, spend: list[tuple[str, str, float, float | None]]) -> None:
        """Set the key gauges from the store: (name, period, spent, budget) per usable key;
        series of keys no longer listed are dropped."""
        self.key_budget.clear()
        self.key_spent.clear()
        for name, period, spent, budget in spend:
            self.key_spent.labels(name, period).set(spent)
            if budget is not None:
                self.key_budget.labels(name, period).set(budget)

    def series(self, model: str, task: str, stream: bool) -> Series:
        key = (model, task, stream)
        found = self._series.get(key)
        if found is None:
            flag = "true" if stream else "false"
            found = self._series[key] = Series(
                ok=self.requests.labels(model, task, "200", flag),
                duration=self.duration.labels(model, task, flag),
                ttft=self.ttft.labels(model, task),
                planned=self.rounds_planned.labels(model, task),
                rounds=self.rounds.labels(model, task),
                prompt=self.prompt_tokens.labels(model, task),
                completion=self.completion_tokens.labels(model, task),
                cost=self.cost.labels(model, task),
                reference=self.reference_cost.labels(model, task),
            )
        return found

    def stop(self, series: Series, model: str, task: str, reason: str) -> Any:
        child = series.stops.get(reason)
        if child is None:
            child = series.stops[reason] = self.stops.labels(model, task, reason)
        return child

    def call(
        self, series: Series, model: str, task: str, call: str
    ) -> tuple[Any, Any, Any, Any, Any]:
        children = series.calls.get(call)
        if children is None:
            children = series.calls[call] = (
                self.calls.labels(model, task, call),
                self.call_prompt_tokens.labels(model, task, call),
                self.call_completion_tokens.labels(model, task, call),
                self.call_cost.labels(model, task, call),
                self.call_duration.labels(model, call),
            )
        return children

    def status(self, model: str, task: str, status: str, stream: bool) -> Any:
        key = (model, task, status, stream)
        child = self._statuses.get(key)
        if child is None:
            flag = "true" if stream else "false"
            child = self._statuses[key] = self.requests.labels(model, task, status, flag)
        return child

    def policy_loaded(self, policy: Policy) -> None:
        digest = policy_hash(policy)
        if digest != self._hash:
            if self._hash is not None:
                self.policy_info.labels(self._hash).set(0)
                self.policy_info.remove(self._hash)
            self.policy_info.labels(digest).set(1)
            self._hash = digest
        self.reloads.labels("success").inc()
        self.last_reload.labels("success").set(time.time())

    def policy_failed(self) -> None:
        self.reloads.labels("failure").inc()
        self.last_reload.labels("failure").set(time.time())

    def refresh(self, backends: Mapping[str, Backend], in_flight: int) -> None:
        """Set the state gauges from the backends now serving (at scrape time, and
        periodically in multiprocess mode); series of models no longer served are dropped."""
        now = time.monotonic()
        seen: set[tuple[str, ...]] = set()
        for model, backend in backends.items():
            self.backend_up.labels(model).set(1 if backend.ready else 0)
            seen.add(("up", model))
            if isinstance(backend, _Queued):
                self.queue_waiting.labels(model).set(backend.waiting)
                seen.add(("queue", model))
            if isinstance(backend, _Replicated):
                for replica in backend.replicas:
                    up = replica.down_until is None or now >= replica.down_until
                    url = _shown_url(replica.url)
                    self.replica_up.labels(model, url).set(1 if up else 0)
                    seen.add(("replica", model, url))
        for gone in self._gauged - seen:
            gauge = {"up": self.backend_up, "queue": self.queue_waiting}.get(
                gone[0], self.replica_up
            )
            gauge.labels(*gone[1:]).set(0)
            gauge.remove(*gone[1:])
        self._gauged = seen
        self.in_flight.set(in_flight)

    def collect(self) -> Iterable[Metric]:
        """Every metric family: this process's, or every worker's in multiprocess mode."""
        return self._exposed().collect()

    def exposition(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE``)."""
        return generate_latest(self._exposed())

    def _exposed(self) -> CollectorRegistry:
        if not self.multiprocess:
            return self.registry
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged


def _shown_url(url: str) -> str:
    """An upstream's API base without credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
