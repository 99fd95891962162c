"""Server-sent events as OpenAI streams them: ``data: {json}`` frames, comment lines for
keep-alive, an ``error`` event, the closing ``data: [DONE]``, and ``CompletionFrames``, which
renders a streamed chat completion from the pipeline's events (``proxy.events``).

Each choice's pieces carry its ``index`` and, when asked for, their ``logprobs``; choices run
side by side interleave. A hidden round is a comment line (``: perfics round 1/2``). An answer
that was not streamed live (kept after hidden rounds, or a tool call) is replayed in small
word-aligned pieces when its choice finishes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from proxy.errors import InternalError, PerficsError
from proxy.events import AnswerDelta, Done, Event, Finished, RoundStarted, Sampled
from proxy.protocol import ChatCompletionRequest
from proxy.response.body import chunk_body, completion_id, logprobs_body, perfics_object
from proxy.results import Outcome, TokenLogprob
from routing.decision import Decision

log = structlog.get_logger(__name__)

DONE = b"data: [DONE]\n\n"


def data(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def comment(text: str) -> bytes:
    """A comment line: ignored by SSE clients, keeps proxies and idle timers from closing."""
    return f": {text}\n\n".encode()


def error(envelope: Mapping[str, Any]) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(envelope) + b"\n\n"


@dataclass(frozen=True, slots=True)
class Frame:
    """Bytes of a stream. ``answering``: they carry answer text or a tool call (the first such
    frame is the client's first token); ``outcome``: set on the last frame of a stream that
    went to its end, the request's result."""

    data: bytes
    answering: bool = False
    outcome: Outcome | None = None


class StreamFailed(Exception):
    """A stream that failed after its headers left: ``error`` was sent as the format's error
    frames, and the stream closed; the request ends with it (its ``Spent`` included)."""

    def __init__(self, error: PerficsError) -> None:
        super().__init__(str(error))
        self.error = error


class EventFrames:
    """The frames of one streamed answer, rendered from the pipeline's events by a wire format
    (``frames``). Holds only what the format needs to render (ids, which choices have
    started); what the stream did comes out of ``render`` as values."""

    async def render(
        self, items: AsyncGenerator[Event, None], keepalive_s: float
    ) -> AsyncGenerator[Frame, None]:
        """Frames until the format's end, the last carrying the outcome. An error after the
        headers left becomes the format's error frames, then ``StreamFailed``. While no answer
        text is streaming (hidden rounds, the wait for a first token), a comment goes out
        whenever ``keepalive_s`` passes without an item; between answer pieces the next item
        is awaited directly, which costs nothing."""
        pending: asyncio.Future[Event] | None = None
        streaming = False
        outcome: Outcome | None = None
        failure: PerficsError | None = None
        try:
            for data in self.opening():
                yield Frame(data)
            while True:
                try:
                    if streaming:
                        item = await anext(items)
                    else:
                        pending = pending or asyncio.ensure_future(anext(items))
                        done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
                        if not done:
                            yield Frame(comment("perfics working"))
                            continue
                        item, pending = pending.result(), None
                except StopAsyncIteration:
                    break
                streaming = isinstance(item, AnswerDelta)
                answering = isinstance(item, AnswerDelta | Finished)
                if isinstance(item, Done):
                    outcome = item.outcome
                for data in await self.frames(item):
                    yield Frame(data, answering=answering)
            if outcome is None:
                raise InternalError("the stream ended without its answer")
            closing = self.closing()
            for data in closing[:-1]:
                yield Frame(data)
            yield Frame(closing[-1] if closing else b"", outcome=outcome)
        except PerficsError as exc:
            log.warning("stream.failed", error=type(exc).__name__, status=exc.status_code)
            failure = exc
        except Exception:
            log.exception("stream.failed")
            failure = InternalError("internal error")
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
        if failure is not None:
            for data in self.failed(failure):
                yield Frame(data)
            raise StreamFailed(failure)

    def opening(self) -> list[bytes]:
        """What the stream starts with, before any event."""
        return []

    async def frames(self, item: Event) -> list[bytes]:
        raise NotImplementedError

    def closing(self) -> list[bytes]:
        """What ends a stream that went to its end."""
        return [DONE]

    def failed(self, exc: PerficsError) -> list[bytes]:
        """What ends a stream that failed after its headers."""
        return [error(exc.to_envelope()), DONE]


class CompletionFrames(EventFrames):
    """The frames of one streamed chat completion."""

    def __init__(self, decision: Decision, chat: ChatCompletionRequest, model: str) -> None:
        super().__init__()
        self.decision = decision
        self.chat = chat
        self.model = model
        self.completion_id = completion_id()
        self.created = int(time.time())
        self.logprobs = bool(chat.logprobs)
        self.role_sent: set[int] = set()
        self.finished: dict[int, Finished] = {}

    async def frames(self, item: Event) -> list[bytes]:
        if isinstance(item, RoundStarted):
            return [comment(f"perfics round {item.round}/{item.of}")]
        if isinstance(item, Sampled):
            return [comment(f"perfics sampling {item.made}/{item.of}")]
        if isinstance(item, AnswerDelta):
            return [self.piece(item.choice, item.text, item.logprobs)]
        if isinstance(item, Finished):
            return self.choice_done(item)
        if isinstance(item, Done):
            return self.done(item.outcome)
        return []

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return data(
            chunk_body(
                completion_id=self.completion_id,
                created=self.created,
                model=self.model,
                choices=choices,
                **extra,
            )
        )

    def piece(self, index: int, text: str, logprobs: Sequence[TokenLogprob] = ()) -> bytes:
        delta: dict[str, Any] = {"content": text}
        if index not in self.role_sent:
            self.role_sent.add(index)
            delta = {"role": "assistant", "content": text}
        shown = logprobs_body(logprobs) if self.logprobs else None
        return self.chunk(
            [{"index": index, "delta": delta, "logprobs": shown, "finish_reason": None}]
        )

    def choice_done(self, item: Finished) -> list[bytes]:
        self.finished[item.choice] = item
        result = item.result
        frames: list[bytes] = []
        if not result.streamed and result.text:
            pieces = replay_pieces(result.text)
            # Replayed whole: the final answer's logprobs ride on its first piece.
            frames.append(self.piece(item.choice, pieces[0], result.logprobs))
            frames += [self.piece(item.choice, text) for text in pieces[1:]]
        if result.tool_calls:  # never streamed live: a call is known whole at its end
            frames += self.tool_calls(item.choice, result.tool_calls)
        if item.choice not in self.role_sent:
            frames.append(self.piece(item.choice, ""))
        return frames

    def tool_calls(self, index: int, calls: Sequence[Mapping[str, Any]]) -> list[bytes]:
        """Each call as OpenAI streams one: its id, type and name with empty arguments (the
        choice's first delta also carries the role and ``content: null``), then its arguments
        in pieces, each delta naming the call by ``index``."""
        frames: list[bytes] = []
        for position, call in enumerate(calls):
            function = call.get("function") or {}
            head: dict[str, Any] = {
                "index": position,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": {"name": function.get("name"), "arguments": ""},
            }
            delta: dict[str, Any] = {"tool_calls": [head]}
            if index not in self.role_sent:
                self.role_sent.add(index)
                delta = {"role": "assistant", "content": None, **delta}
            frames.append(self.chunk([_delta(index, delta)]))
            for piece in replay_pieces(str(function.get("arguments") or "")):
                arguments = {"index": position, "function": {"arguments": piece}}
                frames.append(self.chunk([_delta(index, {"tool_calls": [arguments]})]))
        return frames

    def done(self, outcome: Outcome) -> list[bytes]:
        decision = self.decision
        perfics = perfics_object(decision, outcome, trace=decision.declarations.trace)
        last = max(self.finished)
        frames = [
            self.chunk(
                [_finish(index, done_choice.result.finish_reason)],
                **({"perfics": perfics} if index == last else {}),
            )
            for index, done_choice in sorted(self.finished.items())
        ]
        if self.chat.include_usage:
            frames.append(self.chunk([], usage=outcome.usage.to_openai()))
        return frames


def _finish(index: int, finish_reason: str) -> dict[str, Any]:
    return {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish_reason}


def _delta(index: int, delta: Mapping[str, Any]) -> dict[str, Any]:
    return {"index": index, "delta": dict(delta), "logprobs": None, "finish_reason": None}


def replay_pieces(text: str, size: int = 16) -> list[str]:
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
