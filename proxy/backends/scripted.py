"""A scripted backend: replays queued replies and records every call. For tests, examples and
benchmarks of everything around the model; it never stands in for a model in production.

    backend = ScriptedBackend("m", ["draft", "NO ISSUES"])
    ...
    backend.calls[1].messages[-1]["content"]  # the critique prompt the pipeline sent

A reply is a string, a ``Completion`` (for tool calls, lengths, usage), or an exception to
raise. Usage defaults to the estimate ``ceil(chars/4)`` so cost arithmetic has real numbers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass

from proxy.results import Usage

from .base import (
    Completion,
    Delta,
    Embeddings,
    Message,
    SamplingParams,
)

Reply = str | Completion | BaseException


@dataclass(frozen=True, slots=True)
class Call:
    messages: tuple[Message, ...]
    params: SamplingParams
    streamed: bool


class ScriptedBackend:
    """A ``Backend`` whose replies are queued by the test."""

    serial = False

    def __init__(
        self,
        model_id: str,
        replies: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.model_id = model_id
        self.replies = list(replies)
        self.default = default
        self.delay_s = delay_s
        self.calls: list[Call] = []
        self.is_ready = True
        self.closed = False

    @property
    def ready(self) -> bool:
        return self.is_ready

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        self.closed = True

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        self.calls.append(Call(tuple(messages), params, streamed=False))
        return await self._next(messages)

    async def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        self.calls.append(Call(tuple(messages), params, streamed=True))
        completion = await self._next(messages)
        words = completion.text.split(" ")
        for i, word in enumerate(words):
            yield Delta(text=word if i == 0 else " " + word)
            await asyncio.sleep(0)
        yield Delta(
            tool_calls=completion.tool_calls,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
        )

    async def embed(self, inputs: Sequence[str], dimensions: int | None) -> Embeddings:
        """``[characters, words]`` per input (``dimensions``: the first ones), recorded as a call
        of its inputs; a queued exception is raised instead."""
        self.calls.append(
            Call(tuple({"content": text} for text in inputs), SamplingParams(), False)
        )
        if self.replies and isinstance(failure := self.replies[0], BaseException):
            self.replies.pop(0)
            raise failure
        vectors = tuple(
            (float(len(text)), float(len(text.split())))[: dimensions or 2] for text in inputs
        )
        return Embeddings(vectors, Usage(sum(math.ceil(len(t) / 4) for t in inputs), 0))

    def stream_text(self, prompt: str, params: SamplingParams) -> AsyncGenerator[Delta, None]:
        """A raw continuation, recorded as a call with the prompt as its one message."""
        return self.stream([{"role": "user", "content": prompt, "raw": True}], params)

    async def _next(self, messages: Sequence[Message]) -> Completion:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.replies:
            reply = self.replies.pop(0)
        elif self.default is not None:
            reply = self.default
        else:
            raise AssertionError(f"{self.model_id}: no scripted reply left")
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        prompt = sum(math.ceil(len(str(m.get("content") or "")) / 4) + 4 for m in messages)
        return Completion(reply, "stop", Usage(prompt, math.ceil(len(reply) / 4)))
