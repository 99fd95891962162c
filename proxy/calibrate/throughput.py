"""Prefill and decode speed, measured from the calls a calibration makes anyway.

``TimedBackend`` wraps a model's backend and serves ``complete`` by streaming, so each call
yields two intervals: the time to the first streamed piece (prefill: reading the prompt, plus
one token) and the time from there to the end (decode: the remaining tokens). For the embedded
llama.cpp backend each token is streamed as it is sampled, so the split is close to llama.cpp's
own prompt-eval / eval timings. Prompt tokens are the ones the backend says it actually read
(``evaluated_prompt_tokens``: a prefix reused from its KV cache costs nothing), falling back to
all prompt tokens for backends that do not report it.

Only the draft calls are counted: they read the whole question with an empty cache and write
a full answer; critique and rewrite calls mostly reuse the draft's prefix, and their few new
prompt tokens would be dominated by fixed per-call overhead.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from proxy.backends.base import (
    Backend,
    Completion,
    Delta,
    Likelihood,
    Message,
    SamplingParams,
    Scorer,
    collect,
)
from proxy.errors import BackendError


@dataclass(frozen=True, slots=True)
class CallTiming:
    """One call: tokens read and written, seconds to the first piece and in all."""

    prompt_tokens: int
    completion_tokens: int
    first_s: float
    total_s: float

    def to_json(self) -> dict[str, float]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "first_s": self.first_s,
            "total_s": self.total_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, float]) -> CallTiming:
        return cls(
            int(data["prompt_tokens"]),
            int(data["completion_tokens"]),
            float(data["first_s"]),
            float(data["total_s"]),
        )


@dataclass(frozen=True, slots=True)
class Throughput:
    prefill_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    calls: int


def throughput(timings: Iterable[CallTiming]) -> Throughput:
    """Token-weighted speeds over ``timings`` (``None`` where nothing was measured). The
    first piece of a call also carries one decoded token; its time, at the call's own decode
    rate, is taken off the prefill time."""
    items = list(timings)
    read = sum(t.prompt_tokens for t in items)
    read_s = sum(max(t.first_s - _one_token_s(t), 0.0) for t in items)
    written = sum(max(t.completion_tokens - 1, 0) for t in items)
    written_s = sum(t.total_s - t.first_s for t in items)
    return Throughput(
        round(read / read_s, 1) if read and read_s > 0 else None,
        round(written / written_s, 1) if written and written_s > 0 else None,
        len(items),
    )


def _one_token_s(timing: CallTiming) -> float:
    later = timing.completion_tokens - 1
    return (timing.total_s - timing.first_s) / later if later > 0 else 0.0


class TimedBackend:
    """A ``Backend`` that forwards to ``inner`` and records each ``complete`` call's timing
    and result in ``calls``, in call order."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.serial = inner.serial
        self.calls: list[tuple[CallTiming, Completion]] = []

    @property
    def ready(self) -> bool:
        return self.inner.ready

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        async for delta in self.inner.stream(messages, params):
            yield delta

    async def likelihood(self, messages: Sequence[Message], answer: str) -> Likelihood:
        """``inner``'s, when it can score text (raises ``BackendError`` when it cannot)."""
        if not isinstance(self.inner, Scorer):
            raise BackendError(f"model {self.model_id} cannot score text")
        return await self.inner.likelihood(messages, answer)

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        started = time.perf_counter()
        first: list[float] = []

        async def watched() -> AsyncIterator[Delta]:
            async for delta in self.inner.stream(messages, params):
                if not first:
                    first.append(time.perf_counter())
                yield delta

        completion = await collect(watched())
        ended = time.perf_counter()
        usage = completion.usage
        read = usage.evaluated_prompt_tokens
        timing = CallTiming(
            usage.prompt_tokens if read is None else read,
            usage.completion_tokens,
            (first[0] if first else ended) - started,
            ended - started,
        )
        self.calls.append((timing, completion))
        return completion
