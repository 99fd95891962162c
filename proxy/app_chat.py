"""``POST /v1/chat/completions`` as a plain ASGI endpoint: parse, decide, run the pipeline,
answer in OpenAI's format.

It is the service's one hot path, so it is dispatched before the FastAPI app (``proxy.app``)
and uses neither Starlette's request and response objects nor FastAPI's middleware and
dependency resolution, which took about a fifth of a proxied request's CPU on the benchmark
machine (``benchmarks/README.md``). Errors leave as the same envelope as everywhere else.

A watcher task waits for the client's ``http.disconnect`` and cancels the serving task, so an
abandoned request, streaming or not, stops calling models at once (the backend frees the model
within a token or two).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import structlog
from starlette.types import Receive, Scope, Send

from proxy import logs, pipeline
from proxy.accounts import Accounts
from proxy.admission import Admission
from proxy.errors import InternalError, PerficsError
from proxy.events import Committed
from proxy.exchange import Exchange, Parse, parse_chat
from proxy.http_edge import (
    EVENT_STREAM,
    JSON_TYPE,
    ClientGone,
    DisconnectWatch,
    check_content_type,
    encoded,
    read_body,
    request_headers,
    respond,
)
from proxy.ops.meter import Ops, RequestMeter
from proxy.protocol import ChatCompletionRequest
from proxy.response import decision_headers, error_json, outcome_headers
from proxy.response.stream import StreamFailed
from proxy.results import Outcome
from proxy.runtime import Runtime
from proxy.settings import Settings
from routing.cost import format_usd
from routing.decision import Decision

log = structlog.get_logger(__name__)

CHAT_PATH = "/v1/chat/completions"


class ChatEndpoint:
    """The ASGI app of ``POST /v1/chat/completions`` (and, with another ``parse``, of the other
    wire formats the pipeline serves). ``current`` returns the runtime to serve with (it
    raises ``InternalError`` before the policy is loaded)."""

    def __init__(
        self,
        current: Callable[[], Runtime],
        settings: Settings,
        accounts: Callable[[], Accounts],
        ops: Ops,
        parse: Parse = parse_chat,
    ) -> None:
        self._current = current
        self._settings = settings
        self._accounts = accounts
        self._ops = ops
        self._parse = parse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        meter = self._ops.meter()
        try:
            runtime = self._current()
            admission = await Admission.open(self._accounts(), runtime, headers)
            limits = runtime.policy.server
            check_content_type(headers)
            raw = await read_body(receive, headers, limits.max_body_bytes, limits.body_timeout_s)
            exchange = await self._parse(raw, admission)
            meter.parsed(exchange.chat.stream)
            runtime.acquire()
            try:
                request = _Request(runtime, exchange, headers, self._settings, admission, meter)
                await request.serve(receive, send)
            finally:
                runtime.release()
        except ClientGone:
            meter.failed(499)
            return
        except PerficsError as exc:
            meter.failed(exc.status_code, exc)
            await respond(send, exc.status_code, error_json(exc), JSON_TYPE, exc.headers)
        except Exception as exc:
            meter.failed(500)
            log.error("request.failed", exc_info=exc)
            body = error_json(InternalError("internal server error"))
            await respond(send, 500, body, JSON_TYPE)


class _Request:
    """One request from the decision on: admitted, answered, and settled in the spend ledger
    whatever its end."""

    def __init__(
        self,
        runtime: Runtime,
        exchange: Exchange,
        headers: Mapping[str, str],
        settings: Settings,
        admission: Admission,
        meter: RequestMeter,
    ) -> None:
        self.runtime = runtime
        self.exchange = exchange
        self.chat = exchange.chat
        self.headers = headers
        self.settings = settings
        self.admission = admission
        self.meter = meter
        self.request_id = logs.request_id(headers.get("x-request-id"))

    async def serve(self, receive: Receive, send: Send) -> None:
        logs.bind_request(self.request_id, log_content=self.runtime.policy.refinement.log_content)
        status = 500
        outcome: Outcome | PerficsError | None = None
        admission = self.admission
        try:
            decision = await admission.decide(self.chat, self.headers, raw=self.exchange.raw)
            self.meter.decided(decision, self.runtime, self.chat)
            log.info(
                "route.planned",
                model=decision.plan.model,
                rounds=decision.plan.rounds,
                task=decision.declarations.task,
                task_source=decision.declarations.task_source,
                estimated_cost_usd=format_usd(decision.plan.estimated_cost_usd),
            )
            with DisconnectWatch(receive) as watch:
                try:
                    if self.chat.stream:
                        outcome = await self.streaming(send, decision, watch)
                    else:
                        outcome = await self.complete(send, decision, watch)
                    status = 200
                except StreamFailed as failed:  # sent as an event in the 200 stream
                    status, outcome = failed.error.status_code, failed.error
                except asyncio.CancelledError:
                    if not watch.gone:
                        raise
                    watch.uncancel()
                    status = 499
                    log.info("request.cancelled", reason="client disconnected")
                    raise ClientGone() from None
        except PerficsError as exc:
            status, outcome = exc.status_code, exc
            exc.headers.setdefault("x-request-id", self.request_id)
            exc.headers.update(admission.headers)
            raise
        finally:
            admission.settle(self.request_id, outcome, status=status, stream=self.chat.stream)

    async def complete(self, send: Send, decision: Decision, watch: DisconnectWatch) -> Outcome:
        exchange = self.exchange
        outcome = await pipeline.run(self.runtime, decision, exchange.chat.job(raw=exchange.raw))
        _log_done(decision, outcome, exchange.chat, stream=False)
        body = await exchange.body(decision, outcome)
        headers = decision_headers(
            decision, self.request_id, model=outcome.model, fallbacks=outcome.fallbacks
        )
        headers.update(outcome_headers(outcome))
        headers.update(self.admission.headers)
        watch.stop()
        await respond(send, 200, body, JSON_TYPE, headers)
        self.meter.done(outcome)
        return outcome

    async def streaming(self, send: Send, decision: Decision, watch: DisconnectWatch) -> Outcome:
        """Stream the answer; its outcome. A failure after the headers left is sent as the
        format's error frames, the stream closed, and ``StreamFailed`` raised."""
        exchange, meter = self.exchange, self.meter
        items = pipeline.stream(self.runtime, decision, exchange.chat.job(raw=exchange.raw))
        outcome: Outcome | None = None
        try:
            # Hold the headers until the answering model has started, so they name it and the
            # models that failed before it.
            first = await anext(items)
            assert isinstance(first, Committed)
            headers = decision_headers(
                decision, self.request_id, model=first.model, fallbacks=first.fallbacks
            )
            headers.update(self.admission.headers)
            headers |= {"cache-control": "no-cache", "x-accel-buffering": "no"}
            start = [EVENT_STREAM, *encoded(headers)]
            await send({"type": "http.response.start", "status": 200, "headers": start})
            rendered = exchange.frames(decision, first.model).render(
                items, self.settings.keepalive_s
            )
            async with contextlib.aclosing(rendered):
                async for frame in rendered:
                    if frame.answering:
                        meter.first_token()
                    outcome = frame.outcome or outcome
                    if frame.data:
                        await send(
                            {"type": "http.response.body", "body": frame.data, "more_body": True}
                        )
        except StreamFailed as failed:
            watch.stop()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            meter.failed(failed.error.status_code, failed.error)
            raise
        finally:
            await items.aclose()
        assert outcome is not None  # render's last frame carries it, or it raised
        _log_done(decision, outcome, exchange.chat, stream=True)
        watch.stop()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        meter.done(outcome)
        return outcome


def _log_done(
    decision: Decision, outcome: Outcome, chat: ChatCompletionRequest, *, stream: bool
) -> None:
    log.info(
        "request.done",
        model=outcome.model,
        task=decision.declarations.task,
        stream=stream,
        rounds=outcome.rounds,
        rounds_planned=outcome.rounds_planned,
        stop_reason=outcome.stop_reason,
        prompt_tokens=outcome.usage.prompt_tokens,
        completion_tokens=outcome.usage.completion_tokens,
        cost_usd=format_usd(outcome.cost_usd),
        reference_cost_usd=(
            format_usd(outcome.reference_cost_usd)
            if outcome.reference_cost_usd is not None
            else None
        ),
        fallbacks=len(outcome.fallbacks),
        latency_ms=outcome.latency_ms,
        **logs.content_fields(chat.backend_messages(), [c.text for c in outcome.choices]),
    )
