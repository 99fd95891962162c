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
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import orjson
import structlog
from starlette.types import Receive, Scope, Send

from proxy import logs, pipeline
from proxy.accounts import Accounts, Ticket
from proxy.errors import (
    BackendError,
    InternalError,
    PayloadTooLarge,
    PerficsError,
    QuotaExceeded,
    RequestTimeout,
    UnsupportedMediaType,
)
from proxy.events import Committed
from proxy.ops.observer import Ops, RequestMeter
from proxy.pipeline import Outcome
from proxy.response import (
    CompletionFrames,
    completion_body,
    decision_headers,
    error_json,
    outcome_headers,
)
from proxy.response.stream import EventFrames
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.store.records import KeyRecord, LedgerRow
from proxy.wire import ChatCompletionRequest, parse_chat_request
from routing.cost import format_usd
from routing.decision import Decision

log = structlog.get_logger(__name__)

CHAT_PATH = "/v1/chat/completions"
JSON_TYPE = (b"content-type", b"application/json")
_EVENT_STREAM = (b"content-type", b"text/event-stream; charset=utf-8")
# The rest of an oversized or stalled body is not read: the connection cannot be reused.
_CLOSE = {"connection": "close"}


class ClientGone(Exception):
    """The client disconnected before the answer was complete."""


class Exchange(Protocol):
    """One request in one wire format: the chat request the pipeline serves (``chat``;
    ``raw``: its one message is a prompt to continue as it is), and how its answer is
    rendered, whole (``body``) or as a stream (``frames``)."""

    chat: ChatCompletionRequest
    raw: bool

    async def body(self, decision: Decision, outcome: Outcome) -> bytes: ...

    def frames(self, decision: Decision, model: str) -> EventFrames: ...


Parse = Callable[[bytes, KeyRecord | None, Accounts, Runtime], Awaitable[Exchange]]
"""Reads a body into an ``Exchange`` for the caller's key under the runtime's policy (the
Responses API reads the conversation it continues from the store)."""


class ChatExchange:
    """``POST /v1/chat/completions``: OpenAI's ``chat.completion`` and its chunks."""

    raw = False

    def __init__(self, chat: ChatCompletionRequest) -> None:
        self.chat = chat

    async def body(self, decision: Decision, outcome: Outcome) -> bytes:
        chat = self.chat
        trace = decision.declarations.trace
        return orjson.dumps(
            completion_body(decision, outcome, logprobs=bool(chat.logprobs), trace=trace)
        )

    def frames(self, decision: Decision, model: str) -> EventFrames:
        return CompletionFrames(decision, self.chat, model)


async def parse_chat(
    raw: bytes, key: KeyRecord | None, accounts: Accounts, runtime: Runtime
) -> Exchange:
    return ChatExchange(parse_chat_request(raw))


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
            accounts = self._accounts()
            key = await accounts.caller(headers, runtime.api_key)
            limits = runtime.policy.server
            check_content_type(headers)
            raw = await read_body(receive, headers, limits.max_body_bytes, limits.body_timeout_s)
            exchange = await self._parse(raw, key, accounts, runtime)
            meter.parsed(exchange.chat.stream)
            runtime.acquire()
            try:
                request = _Request(runtime, exchange, headers, self._settings, accounts, key, meter)
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
    """One request from the decision on: admitted by the caller's key, answered, and entered
    in the spend ledger whatever its end."""

    def __init__(
        self,
        runtime: Runtime,
        exchange: Exchange,
        headers: Mapping[str, str],
        settings: Settings,
        accounts: Accounts,
        key: KeyRecord | None,
        meter: RequestMeter,
    ) -> None:
        self.runtime = runtime
        self.exchange = exchange
        self.chat = exchange.chat
        self.headers = headers
        self.settings = settings
        self.accounts = accounts
        self.key = key
        self.meter = meter
        self.ticket: Ticket | None = None
        self.decision: Decision | None = None
        self.outcome: Outcome | None = None
        self.failure: PerficsError | None = None
        self.started = time.time()

    async def serve(self, receive: Receive, send: Send) -> None:
        request_id = logs.request_id(self.headers.get("x-request-id"))
        logs.bind_request(request_id, log_content=self.runtime.policy.refinement.log_content)
        status = 500
        try:
            await self._admit()
            decision = self.decision
            assert decision is not None
            self.meter.decided(decision, self.runtime, self.chat)
            log.info(
                "route.planned",
                model=decision.plan.model,
                rounds=decision.plan.rounds,
                task=decision.declarations.task,
                task_source=decision.declarations.task_source,
                estimated_cost_usd=format_usd(decision.plan.estimated_cost_usd),
            )
            extra = self.ticket.headers if self.ticket is not None else {}
            with _DisconnectWatch(receive) as watch:
                try:
                    if self.chat.stream:
                        ended = await _streaming(
                            send,
                            self.runtime,
                            decision,
                            self.exchange,
                            request_id,
                            extra,
                            self.settings,
                            watch,
                            self.meter,
                        )
                        # After the headers, a failure is an event in a 200 stream; the
                        # ledger records its status.
                        if isinstance(ended, Outcome):
                            self.outcome = ended
                        else:
                            self.failure = ended
                    else:
                        self.outcome = await _complete(
                            send,
                            self.runtime,
                            decision,
                            self.exchange,
                            request_id,
                            extra,
                            watch,
                            self.meter,
                        )
                    status = self.failure.status_code if self.failure else 200
                except asyncio.CancelledError:
                    if not watch.gone:
                        raise
                    watch.uncancel()
                    status = 499
                    log.info("request.cancelled", reason="client disconnected")
                    raise ClientGone() from None
        except PerficsError as exc:
            status = exc.status_code
            self.failure = exc
            exc.headers.setdefault("x-request-id", request_id)
            if self.ticket is not None:
                exc.headers.update(self.ticket.headers)
            raise
        finally:
            self.accounts.record(self._row(request_id, status))

    async def _admit(self) -> None:
        """Decide within the key's limits and draw on its lease; when the budget as last seen
        here was stale, plan once more within what the store says is left."""
        key = self.key
        scope = self.accounts.scope(key) if key is not None else None
        self.decision = pipeline.decide(
            self.runtime, self.chat, self.headers, scope, raw=self.exchange.raw
        )
        if key is None or scope is None:
            return
        try:
            self.ticket = await self.accounts.admit(key, self.decision)
        except QuotaExceeded as exc:
            if not exc.retryable_within or exc.left_usd is None:
                raise
            scope = replace(scope, left_usd=max(exc.left_usd, 0.0))
            self.decision = pipeline.decide(
                self.runtime, self.chat, self.headers, scope, raw=self.exchange.raw
            )
            self.ticket = await self.accounts.admit(key, self.decision)
        left = self.ticket.left_usd
        if left is None:
            return
        # The key's budget is the run's ceiling only where it could bind: a ceiling caps
        # answers at the planned length and holds the upstream to it by streaming, which a
        # request far inside its key's budget does not need (its overspend is at most its
        # estimate's error, like any request in flight).
        declarations = self.decision.declarations
        binds = left < self.decision.worst_case_usd(self.runtime.policy)
        if binds and (declarations.budget_usd is None or declarations.budget_usd > left):
            declarations = replace(declarations, budget_usd=max(left, 0.0), budget_source="key")
        elif not binds and declarations.budget_source == "key":
            declarations = replace(declarations, budget_usd=None, budget_source=None)
        else:
            return
        self.decision = replace(self.decision, declarations=declarations)

    def _row(self, request_id: str, status: int) -> LedgerRow:
        outcome, ticket, decision = self.outcome, self.ticket, self.decision
        failure = self.failure
        usage = outcome.usage if outcome is not None else None
        if outcome is not None:
            cost = outcome.cost_usd
        elif isinstance(failure, BackendError) and failure.request_cost_usd is not None:
            # The upstreams failed it: charged what its finished calls cost, no more.
            cost, usage = failure.request_cost_usd, failure.request_usage
        else:
            # Gone before its answer was whole (or failed here): charged what it reserved,
            # since its last call's tokens, perhaps already streamed, are not known.
            cost = ticket.amount_usd if ticket else 0.0
        return LedgerRow(
            time=self.started,
            request_id=request_id,
            key_id=self.key.id if self.key is not None else None,
            model=outcome.model if outcome else (decision.plan.model if decision else None),
            task=decision.declarations.task if decision else None,
            rounds=outcome.rounds if outcome else None,
            stop_reason=outcome.stop_reason if outcome else None,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cost_usd=cost,
            reference_cost_usd=outcome.reference_cost_usd if outcome else None,
            latency_ms=round((time.time() - self.started) * 1000),
            status=status,
            fallbacks=len(outcome.fallbacks) if outcome else 0,
            stream=bool(self.chat.stream),
            lease_id=ticket.lease_id if ticket else None,
            reserved_usd=ticket.amount_usd if ticket else 0.0,
            period=ticket.period if ticket else None,
            window=ticket.window if ticket else None,
            tokens_estimated=ticket.tokens_estimated if ticket else 0,
        )


async def _complete(
    send: Send,
    runtime: Runtime,
    decision: Decision,
    exchange: Exchange,
    request_id: str,
    extra: Mapping[str, str],
    watch: _DisconnectWatch,
    meter: RequestMeter,
) -> Outcome:
    outcome = await pipeline.run(runtime, decision, exchange.chat, raw=exchange.raw)
    _log_done(decision, outcome, exchange.chat, stream=False)
    body = await exchange.body(decision, outcome)
    headers = decision_headers(
        decision, request_id, model=outcome.model, fallbacks=outcome.fallbacks
    )
    headers.update(outcome_headers(outcome))
    headers.update(extra)
    watch.stop()
    await respond(send, 200, body, JSON_TYPE, headers)
    meter.done(outcome)
    return outcome


async def _streaming(
    send: Send,
    runtime: Runtime,
    decision: Decision,
    exchange: Exchange,
    request_id: str,
    extra: Mapping[str, str],
    settings: Settings,
    watch: _DisconnectWatch,
    meter: RequestMeter,
) -> Outcome | PerficsError:
    """Stream the answer; its outcome, or the error sent as an event after the headers."""
    chat = exchange.chat
    items = pipeline.stream(runtime, decision, chat, raw=exchange.raw)
    try:
        # Hold the headers until the answering model has started, so they name it and the
        # models that failed before it.
        first = await anext(items)
        assert isinstance(first, Committed)
        headers = decision_headers(
            decision, request_id, model=first.model, fallbacks=first.fallbacks
        )
        headers.update(extra)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [_EVENT_STREAM, *_encoded(headers)],
            }
        )
        completion = exchange.frames(decision, first.model)
        frames = completion.render(items, settings.keepalive_s)
        async with contextlib.aclosing(frames):
            async for frame in frames:
                if completion.answering:
                    meter.first_token()
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        if completion.outcome is not None:
            _log_done(decision, completion.outcome, chat, stream=True)
        watch.stop()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if completion.outcome is not None:
            meter.done(completion.outcome)
            return completion.outcome
        failure = completion.failure or InternalError("the stream ended without its answer")
        meter.failed(failure.status_code, failure)
        return failure
    finally:
        await items.aclose()


class _DisconnectWatch:
    """While active, a client disconnect cancels the task that entered it, and ``gone`` turns
    true. ``stop`` ends the watch (before the last message, which completes the response: the
    server then reports the request as disconnected)."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.gone = False
        self._watcher: asyncio.Task[None] | None = None
        self._serving: asyncio.Task[Any] | None = None

    def __enter__(self) -> _DisconnectWatch:
        self._serving = asyncio.current_task()
        assert self._serving is not None
        self._watcher = asyncio.get_running_loop().create_task(self._watch(self._serving))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def uncancel(self) -> None:
        """Withdraw the cancellation this watch made, once it has been handled."""
        assert self._serving is not None
        self._serving.uncancel()

    async def _watch(self, serving: asyncio.Task[Any]) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        serving.cancel()


def check_content_type(headers: Mapping[str, str]) -> None:
    """JSON bodies only (``application/json``, or a ``+json`` type): a browser can send
    ``text/plain`` or a form across sites without asking, never JSON."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        shown = media[:60] or "none"
        raise UnsupportedMediaType(
            f"the body must be JSON, sent with 'Content-Type: application/json' (got {shown})"
        )


async def read_body(
    receive: Receive, headers: Mapping[str, str], limit: int, timeout_s: float
) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes
    (from ``Content-Length`` before reading, or while reading), and with 408 when it has not
    arrived whole within ``timeout_s``."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}", headers=_CLOSE)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the body exceeds the limit of {limit} bytes", headers=_CLOSE
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g} s", headers=_CLOSE
        ) from None


def request_headers(scope: Scope) -> dict[str, str]:
    """The request headers by lowercase name (ASGI servers lowercase them); a repeated header
    keeps its first value, as Starlette's ``Headers.get`` does."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in reversed(scope["headers"])
    }


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: tuple[bytes, bytes],
    headers: Mapping[str, str] | None = None,
) -> None:
    raw = [(b"content-length", str(len(body)).encode()), content_type]
    if headers:
        raw += _encoded(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


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
