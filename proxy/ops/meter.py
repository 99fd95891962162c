"""What the chat endpoint reports about each request, to metrics and tracing.

    meter = ops.meter()               # on arrival
    meter.parsed(chat.stream)         # once the body is valid
    meter.decided(decision, runtime, chat)  # once planned (the request span starts here)
    meter.first_token()               # a stream's first answer chunk
    meter.done(outcome)               # after the last byte; or
    meter.failed(status, exc)         # an error answer (499: the client went away)

A meter records once, at ``done`` or ``failed``, from ``pipeline.Outcome`` and the choices'
``CallRecord``s: nothing is counted inside the refinement loop or a backend. With metrics and
tracing both off, ``ops.meter()`` returns a meter that does nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import BackendError, PerficsError, QueueFull
from proxy.ops.dashboard import Dashboard
from proxy.ops.metrics import NONE, Metrics
from proxy.ops.tracing import Tracing, tracing_from_env
from proxy.protocol import ChatCompletionRequest
from proxy.results import CallRecord, Outcome
from proxy.runtime import Runtime
from routing.decision import Decision

"""Policies whose prices are kept: the one loaded and those still draining requests."""
REFRESH_S = 5.0
"""How often each worker sets its state gauges in multiprocess mode (a scrape reaches one)."""


@dataclass(eq=False)
class Ops:
    """The process's metrics (None when turned off), tracing (None unless enabled) and the
    dashboard's own state."""

    metrics: Metrics | None
    tracing: Tracing | None
    dashboard: Dashboard = field(default_factory=Dashboard)

    @classmethod
    def create(
        cls,
        *,
        metrics: bool,
        tracing: Tracing | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Ops:
        """Metrics unless turned off; ``tracing`` as given, else from the ``OTEL_*``
        variables."""
        return cls(
            Metrics(environ) if metrics else None,
            tracing if tracing is not None else tracing_from_env(environ),
        )

    def __post_init__(self) -> None:
        self._off = self.metrics is None and self.tracing is None
        self._null = _NullMeter(self)

    def meter(self) -> RequestMeter:
        if self._off:
            return self._null
        return RequestMeter(self)

    def policy_loaded(self, runtime: Runtime) -> None:
        self.dashboard.policy_loaded(runtime.source)
        if self.metrics is not None:
            self.metrics.policy_loaded(runtime.policy)

    def policy_failed(self, error: str) -> None:
        self.dashboard.policy_failed(error)
        if self.metrics is not None:
            self.metrics.policy_failed()

    def refresh(self, runtime: Runtime | None) -> None:
        """Set the state gauges (backends, replicas, queues, requests in flight)."""
        if self.metrics is not None and runtime is not None:
            self.metrics.refresh(runtime.backends, runtime.in_flight)

    async def refresh_forever(self, current: Callable[[], Runtime | None]) -> None:
        """In multiprocess mode, keep this worker's state gauges current for the scrapes
        another worker answers; otherwise return at once (a scrape refreshes them)."""
        if self.metrics is None or not self.metrics.multiprocess:
            return
        while True:
            self.refresh(current())
            await asyncio.sleep(REFRESH_S)

    def close(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()


class RequestMeter:
    """One request's figures (module docstring)."""

    __slots__ = (
        "_content",
        "_decision",
        "_finished",
        "_first",
        "_metrics",
        "_ops",
        "_span",
        "_started",
        "_started_ns",
        "_stream",
        "_tracing",
    )

    def __init__(self, ops: Ops) -> None:
        self._started = time.perf_counter()
        self._started_ns = time.time_ns()
        self._ops = ops
        self._metrics = ops.metrics
        self._tracing = ops.tracing
        self._stream = False
        self._decision: Decision | None = None
        self._first: float | None = None
        self._finished = False
        self._span: tuple[Any, object] | None = None
        self._content: Any = None

    def parsed(self, stream: bool) -> None:
        self._stream = stream

    def decided(self, decision: Decision, runtime: Runtime, chat: ChatCompletionRequest) -> None:
        self._decision = decision
        if self._tracing is not None:
            if runtime.policy.refinement.log_content:
                self._content = chat.backend_messages()
            self._span = self._tracing.start(self._started_ns, decision)

    def first_token(self) -> None:
        if self._first is None:
            self._first = time.perf_counter()

    def done(self, outcome: Outcome) -> None:
        if self._finished:
            return
        self._finished = True
        if self._metrics is not None and self._decision is not None:
            self._record(self._metrics, self._decision, outcome)
        if self._span is not None and self._tracing is not None:
            span, token = self._span
            self._tracing.finish(span, token, status=200, outcome=outcome, content=self._content)

    def failed(self, status: int, exc: PerficsError | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        decision = self._decision
        model, task = (decision.plan.model, decision.declarations.task) if decision else (NONE,) * 2
        metrics = self._metrics
        if metrics is not None:
            metrics.status(model, task, str(status), self._stream).inc()
            if isinstance(exc, QueueFull):
                metrics.queue_rejections.labels(model).inc()
            spent = exc.request if isinstance(exc, BackendError) else None
            if spent is not None:
                # What the calls that finished before the failure cost (the ledger charges it).
                series = metrics.series(model, task, self._stream)
                series.prompt.inc(spent.usage.prompt_tokens)
                series.completion.inc(spent.usage.completion_tokens)
                series.cost.inc(spent.cost_usd)
                self._calls(metrics, task, spent.calls)
        if self._span is not None and self._tracing is not None:
            span, token = self._span
            calls = exc.request.calls if isinstance(exc, BackendError) and exc.request else ()
            self._tracing.finish(
                span, token, status=status, outcome=None, content=None, failed_calls=calls
            )

    def _record(self, metrics: Metrics, decision: Decision, outcome: Outcome) -> None:
        model, task = outcome.model, decision.declarations.task
        series = metrics.series(model, task, self._stream)
        now = time.perf_counter()
        series.ok.inc()
        series.duration.observe(now - self._started)
        if self._stream and self._first is not None:
            series.ttft.observe(self._first - self._started)
        series.planned.observe(outcome.rounds_planned)
        series.prompt.inc(outcome.usage.prompt_tokens)
        series.completion.inc(outcome.usage.completion_tokens)
        series.cost.inc(outcome.cost_usd)
        if outcome.reference_cost_usd is not None:
            series.reference.inc(outcome.reference_cost_usd)
        for failed in outcome.fallbacks:
            metrics.fallbacks.labels(failed).inc()
        if decision.sends_tools and not decision.candidate(model).offers_tools:
            metrics.tools_not_offered.labels(model).inc()
        for choice in outcome.choices:
            series.rounds.observe(choice.rounds)
            metrics.stop(series, model, task, choice.stop_reason).inc()
        self._calls(metrics, task, outcome.spent.calls)

    def _calls(self, metrics: Metrics, task: str, calls: Iterable[CallRecord]) -> None:
        """The per-call series: each call under the model that made it (a model that failed
        before another answered included), at the cost it was charged."""
        for call in calls:
            model = call.model
            series = metrics.series(model, task, self._stream)
            count, prompt, completion, cost, duration = metrics.call(series, model, task, call.call)
            count.inc()
            prompt.inc(call.usage.prompt_tokens)
            completion.inc(call.usage.completion_tokens)
            cost.inc(call.cost_usd)
            duration.observe(call.duration_s)


class _NullMeter(RequestMeter):
    """Metrics and tracing off: every report is dropped."""

    def parsed(self, stream: bool) -> None:
        return None

    def decided(self, decision: Decision, runtime: Runtime, chat: ChatCompletionRequest) -> None:
        return None

    def first_token(self) -> None:
        return None

    def done(self, outcome: Outcome) -> None:
        return None

    def failed(self, status: int, exc: PerficsError | None = None) -> None:
        return None
