"""OpenTelemetry spans, optional: the ``otel`` extra, off unless the standard ``OTEL_*``
variables ask for it, and imported only then.

On when ``OTEL_SDK_DISABLED`` is not true and ``OTEL_TRACES_EXPORTER`` names an exporter
(``otlp``, ``console``), or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the exporter then defaults to ``otlp``). The resource
comes from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (service name ``perfics`` when
unset); the OTLP exporter reads its own ``OTEL_EXPORTER_OTLP_*`` settings.

Spans: one per request (``POST /v1/chat/completions``), the decision and the outcome as
attributes, current while the request is served (so instrumented clients nest under it); one
child per internal call (``draft``, ``critique 1``, ``rewrite 1``, ``review 1`` ...) with its
tokens, timed as the call ran. Prompt, critique and answer text are attributes only when the
policy's ``refinement.log_content`` is true.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.results import CallRecord, Outcome, Refined
from routing.decision import Decision

EXPORTERS = ("otlp", "console")
_OFF = {"none", ""}


def tracing_from_env(environ: Mapping[str, str] = os.environ) -> Tracing | None:
    """A ``Tracing`` when the environment enables it (module docstring) and the ``otel`` extra
    is installed, else None. A named exporter perfics does not know raises ``ValueError``."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip().lower() not in _OFF
    ]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if "OTEL_TRACES_EXPORTER" not in environ and endpoint:
        exporters = ["otlp"]
    if not exporters:
        return None
    unknown = sorted(set(exporters) - set(EXPORTERS))
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER: unknown {', '.join(unknown)}")
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return None
    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": "perfics"}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return Tracing(provider)


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class Tracing:
    """Spans from one ``TracerProvider`` (the SDK's; tests pass one with an in-memory
    exporter)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("perfics")

    def start(self, started_ns: int, decision: Decision) -> tuple[Any, object]:
        """The request's span, begun at ``started_ns`` and made current; and the token that
        ``finish`` detaches."""
        from opentelemetry import context, trace

        span = self._tracer.start_span(
            "POST /v1/chat/completions",
            kind=trace.SpanKind.SERVER,
            start_time=started_ns,
            attributes=_decision_attributes(decision),
        )
        return span, context.attach(trace.set_span_in_context(span))

    def finish(
        self,
        span: Any,
        token: object,
        *,
        status: int,
        outcome: Outcome | None,
        content: Sequence[Mapping[str, Any]] | None,
        failed_calls: Sequence[CallRecord] = (),
    ) -> None:
        """Record ``outcome`` (None: the request failed with ``status``) and each internal
        call as a child, the calls of models that failed (``failed_calls``, or the outcome's)
        included, then end the span. ``content``: the conversation, given only when the
        policy logs content."""
        from opentelemetry import context, trace

        context.detach(token)  # type: ignore[arg-type]
        span.set_attribute("http.response.status_code", status)
        parent = trace.set_span_in_context(span)
        for call in outcome.failed_calls if outcome is not None else failed_calls:
            self._call(parent, call.model, None, call, None)
        if outcome is None:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end()
            return
        span.set_attributes(_outcome_attributes(outcome))
        if content is not None:
            span.set_attribute("perfics.prompt", _text(content))
            span.set_attribute("perfics.answer", [choice.text for choice in outcome.choices])
        for choice, result in enumerate(outcome.choices):
            self._calls(parent, outcome.model, choice, result, with_text=content is not None)
        span.end()

    def _calls(
        self, parent: Any, model: str, choice: int, result: Refined, *, with_text: bool
    ) -> None:
        texts: dict[tuple[str, int], str | None] = {}
        if with_text:
            for trace_round in result.trace:
                texts[("critique", trace_round.round)] = trace_round.critique
                texts[("rewrite", trace_round.round)] = trace_round.rewrite
        for call in result.calls:
            self._call(parent, model, choice, call, texts.get((call.call, call.round)))

    def _call(
        self, parent: Any, model: str, choice: int | None, call: CallRecord, text: str | None
    ) -> None:
        """One internal call's span; ``choice`` None for a call of a model that then failed."""
        name = call.call if call.call == "draft" else f"{call.call} {call.round}"
        attributes: dict[str, Any] = {
            "perfics.call": call.call,
            "perfics.round": call.round,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": call.usage.prompt_tokens,
            "gen_ai.usage.output_tokens": call.usage.completion_tokens,
        }
        if choice is None:
            attributes["perfics.failed_model"] = True
        else:
            attributes["perfics.choice"] = choice
        if text is not None:
            attributes["perfics.output"] = text
        span = self._tracer.start_span(
            name, context=parent, start_time=call.started_ns, attributes=attributes
        )
        span.end(end_time=call.started_ns + round(call.duration_s * 1e9))

    def shutdown(self) -> None:
        self.provider.shutdown()


def _decision_attributes(decision: Decision) -> dict[str, Any]:
    plan, declared = decision.plan, decision.declarations
    attributes: dict[str, Any] = {
        "perfics.model": plan.model,
        "perfics.task": declared.task,
        "perfics.task_source": declared.task_source,
        "perfics.score": plan.score,
        "perfics.rounds_planned": plan.rounds,
        "perfics.estimated_cost_usd": plan.estimated_cost_usd,
        "perfics.prompt_tokens_estimated": decision.prompt_tokens,
    }
    if declared.budget_usd is not None:
        attributes["perfics.budget_usd"] = declared.budget_usd
    return attributes


def _outcome_attributes(outcome: Outcome) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "perfics.answered_by": outcome.model,
        "perfics.rounds": outcome.rounds,
        "perfics.stop_reason": outcome.stop_reason,
        "perfics.cost_usd": outcome.cost_usd,
        "perfics.fallbacks": list(outcome.fallbacks),
        "gen_ai.usage.input_tokens": outcome.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": outcome.usage.completion_tokens,
    }
    if outcome.reference_cost_usd is not None:
        attributes["perfics.reference_cost_usd"] = outcome.reference_cost_usd
    return attributes


def _text(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"{message.get('role')}: {message.get('content')}" for message in messages]
