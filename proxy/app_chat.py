"""``POST /v1/chat/completions``: parse, decide, run the pipeline, answer in OpenAI's format.

A watcher task waits for the client's ``http.disconnect`` and cancels the work, so an abandoned
request stops calling models at once (the backend frees the model within a token or two).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
import structlog
from routing.cost import format_usd
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from proxy import pipeline, sse
from proxy.errors import InternalError, PerficsError
from proxy.headers import decision_headers, outcome_headers
from proxy.pipeline import (
    AnswerPiece,
    ChoiceDone,
    Committed,
    Decision,
    Done,
    Outcome,
    Progress,
    StreamItem,
)
from proxy.runtime import Runtime
from proxy.wire import ChatCompletionRequest, choice_body, chunk_body, completion_body

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was complete."""


async def chat_completions(
    request: Request, runtime: Runtime, chat: ChatCompletionRequest, keepalive_s: float
) -> Response:
    """Serve one chat completion. ``runtime`` has been acquired by the caller, and is released
    here when the work is done (for a stream, when the stream ends)."""
    request_id = f"req_{uuid.uuid4().hex}"
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        decision = pipeline.decide(runtime, chat, request.headers)
    except PerficsError as exc:
        exc.headers.setdefault("x-request-id", request_id)
        runtime.release()
        raise
    log.info(
        "route.planned",
        model=decision.plan.model,
        rounds=decision.plan.rounds,
        task=decision.declarations.task,
        task_source=decision.declarations.task_source,
        estimated_cost_usd=format_usd(decision.plan.estimated_cost_usd),
    )
    if chat.stream:
        return await _streaming(request, runtime, decision, chat, request_id, keepalive_s)
    try:
        outcome = await _unless_disconnected(request, lambda: pipeline.run(runtime, decision, chat))
    except PerficsError as exc:
        exc.headers.setdefault("x-request-id", request_id)
        raise
    finally:
        runtime.release()
    _log_done(decision, outcome, stream=False)
    created = int(time.time())
    body = completion_body(
        completion_id=f"chatcmpl-{uuid.uuid4().hex}",
        created=created,
        model=outcome.model,
        choices=[
            choice_body(i, c.text, c.finish_reason, c.tool_calls)
            for i, c in enumerate(outcome.choices)
        ],
        usage=outcome.usage.to_openai(),
        perfics=pipeline.perfics_object(decision, outcome, trace=decision.declarations.trace),
    )
    headers = decision_headers(
        decision, request_id, model=outcome.model, fallbacks=outcome.fallbacks
    )
    headers.update(outcome_headers(outcome))
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


async def _unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.info("request.cancelled", reason="client disconnected")
        watcher.cancel()
    if task.cancelled():
        raise ClientGone()
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _streaming(
    request: Request,
    runtime: Runtime,
    decision: Decision,
    chat: ChatCompletionRequest,
    request_id: str,
    keepalive_s: float,
) -> Response:
    items = pipeline.events(runtime, decision, chat, live=True)
    # Hold the headers until the answering model has started, so they name it and the
    # models that failed before it.
    try:
        first = await _unless_disconnected(request, lambda: anext(items))
    except BaseException:
        await items.aclose()
        runtime.release()
        raise
    assert isinstance(first, Committed)
    headers = decision_headers(decision, request_id, model=first.model, fallbacks=first.fallbacks)
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"
    frames = _frames(items, runtime, decision, chat, first.model, keepalive_s)
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)


async def _frames(
    items: AsyncGenerator[StreamItem, None],
    runtime: Runtime,
    decision: Decision,
    chat: ChatCompletionRequest,
    model: str,
    keepalive_s: float,
) -> AsyncIterator[bytes]:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return sse.data(
            chunk_body(
                completion_id=completion_id, created=created, model=model, choices=choices, **extra
            )
        )

    role_sent: set[int] = set()

    def piece(index: int, text: str) -> bytes:
        delta: dict[str, Any] = {"content": text}
        if index not in role_sent:
            role_sent.add(index)
            delta = {"role": "assistant", "content": text}
        return chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}])

    pending: asyncio.Future[StreamItem] | None = None
    finished: dict[int, ChoiceDone] = {}
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
            if not done:
                yield sse.comment("perfics working")
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                break
            pending = None
            if isinstance(item, Progress):
                yield sse.comment(f"perfics round {item.round}/{item.of}")
            elif isinstance(item, AnswerPiece):
                yield piece(item.choice, item.text)
            elif isinstance(item, ChoiceDone):
                finished[item.choice] = item
                result = item.result
                if not result.streamed:
                    for text in _replay_pieces(result.text):
                        yield piece(item.choice, text)
                    if result.tool_calls:
                        yield chunk([_tool_call_delta(item.choice, result.tool_calls)])
                if item.choice not in role_sent:
                    yield piece(item.choice, "")
            elif isinstance(item, Done):
                outcome = item.outcome
                perfics = pipeline.perfics_object(
                    decision, outcome, trace=decision.declarations.trace
                )
                last = max(finished)
                for index, done_choice in sorted(finished.items()):
                    yield chunk(
                        [_finish(index, done_choice.result.finish_reason)],
                        **({"perfics": perfics} if index == last else {}),
                    )
                if chat.include_usage:
                    yield chunk([], usage=outcome.usage.to_openai())
                _log_done(decision, outcome, stream=True)
        yield sse.DONE
    except PerficsError as exc:
        log.warning("stream.failed", error=type(exc).__name__, status=exc.status_code)
        yield sse.error(exc.to_envelope())
        yield sse.DONE
    except Exception:
        log.exception("stream.failed")
        yield sse.error(InternalError("internal error").to_envelope())
        yield sse.DONE
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await items.aclose()
        runtime.release()


def _finish(index: int, finish_reason: str) -> dict[str, Any]:
    return {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish_reason}


def _tool_call_delta(index: int, tool_calls: Any) -> dict[str, Any]:
    calls = [{"index": i, **call} for i, call in enumerate(tool_calls)]
    return {"index": index, "delta": {"tool_calls": calls}, "logprobs": None, "finish_reason": None}


def _replay_pieces(text: str, size: int = 16) -> list[str]:
    """An answer accepted without a live rewrite, cut into small chunks, words kept whole."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        space = text.rfind(" ", start + 1, end + 1) if end < len(text) else -1
        end = space if space > start else end
        pieces.append(text[start:end])
        start = end
    return pieces


def _log_done(decision: Decision, outcome: Outcome, *, stream: bool) -> None:
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
    )
