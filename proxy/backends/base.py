"""The backend contract: what the pipeline asks of a model, whatever runs it.

A backend turns a list of OpenAI-format chat messages plus sampling parameters into one
completion, either whole (``complete``) or as a stream of ``Delta``s (``stream``). It raises only
``proxy.errors`` exceptions: third-party errors are translated once, inside the backend.

Cancellation is part of the contract: when the awaiting task is cancelled (the client went
away), the backend stops generating within a token or two and frees the model for the next
request before the cancellation finishes propagating.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from proxy.errors import UpstreamRejected
from proxy.results import TokenLogprob, Usage

Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """One call's generation settings, already validated by the wire layer."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: Mapping[str, Any] | None = None
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None

    def to_openai(self) -> dict[str, Any]:
        """The set fields as OpenAI request keys (what an upstream or litellm is sent);
        ``top_k``, ``min_p`` and the repeat penalty (``repetition_penalty``) are vLLM's and
        llama.cpp server's extensions, set only from a model's ``defaults`` where its backend
        takes them."""
        body: dict[str, Any] = {
            name: value for name in _OPENAI_FIELDS if (value := getattr(self, name)) is not None
        }
        if self.stop:
            body["stop"] = list(self.stop)
        if self.repeat_penalty is not None:
            body["repetition_penalty"] = self.repeat_penalty
        return body

    def with_defaults(self, defaults: Mapping[Any, float | int]) -> SamplingParams:
        """These settings with ``defaults`` (a model's ``defaults``) filling the fields the
        client left unset."""
        unset = {name: value for name, value in defaults.items() if getattr(self, name) is None}
        return self.replace(**unset) if unset else self

    def replace(self, **changes: Any) -> SamplingParams:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return SamplingParams(**values)


_OPENAI_FIELDS = (
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "top_k",
    "min_p",
)


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished call. ``finish_reason`` is OpenAI's: stop, length, tool_calls. ``logprobs``
    holds one entry per answer token when the call asked for them."""

    text: str
    finish_reason: str
    usage: Usage
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed piece. The last delta of a stream carries ``finish_reason`` and ``usage``."""

    text: str = ""
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: tuple[TokenLogprob, ...] = ()


class Backend(Protocol):
    """What the pipeline needs from a model. ``ready`` is false until ``start`` has succeeded
    and while the backend knows it cannot serve (every replica down). ``serial``: calls run one
    at a time (the embedded model), so a request's choices need not be run side by side."""

    model_id: str
    serial: bool

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion: ...

    def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Likelihood:
    """How likely a model finds a text as its answer to a conversation: the mean natural-log
    probability per token of ``tokens`` tokens, and the usage of the call that measured it
    (a prefill: prompt tokens only)."""

    mean_logprob: float
    tokens: int
    usage: Usage


@runtime_checkable
class Scorer(Protocol):
    """A backend that can score a given answer instead of generating one (refinement's
    ``likelier`` rule). Optional: backends without it are simply not ``Scorer``s."""

    async def likelihood(self, messages: Sequence[Message], answer: str) -> Likelihood:
        """The likelihood of ``answer`` as the assistant's next message after ``messages``."""
        ...


@runtime_checkable
class TextCompleter(Protocol):
    """A backend that also continues raw text, without a chat template (``POST
    /v1/completions``). Every backend of the table is one."""

    def stream_text(self, prompt: str, params: SamplingParams) -> AsyncGenerator[Delta, None]:
        """Continue ``prompt`` as it is, delta by delta (the last carries finish reason and
        usage). Tools and response formats do not apply."""
        ...


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One vector per input, in input order, and the call's usage (prompt tokens only)."""

    vectors: tuple[tuple[float, ...], ...]
    usage: Usage


@runtime_checkable
class Embedder(Protocol):
    """A backend that embeds text (a model whose entry lists the ``embeddings``
    capability)."""

    async def embed(self, inputs: Sequence[str], dimensions: int | None) -> Embeddings:
        """One vector per input (``dimensions``: shortened to that many, where the model can
        be asked to)."""
        ...


class RawText:
    """A backend's raw text continuation behind the chat contract, so the pipeline serves
    ``/v1/completions`` as it serves chats: the conversation's one message is the prompt."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.model_id = backend.model_id
        self.serial = backend.serial

    @property
    def ready(self) -> bool:
        return self.backend.ready

    async def start(self) -> None:
        await self.backend.start()

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        return await collect(self.stream(messages, params))

    def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        backend = self.backend
        if not isinstance(backend, TextCompleter):
            raise UpstreamRejected(f"model {self.model_id} cannot continue raw text")
        return backend.stream_text(str(messages[-1]["content"]), params)


@runtime_checkable
class Sampler(Protocol):
    """A backend that makes several answers to one conversation in one go, cheaper than as
    many ``complete`` calls (selection's samples, a request's ``n``): the embedded backend in
    one batch sharing the prompt's KV cache, an OpenAI-compatible upstream with one ``n``
    request. Optional: backends without it are simply not ``Sampler``s."""

    async def sample(
        self, messages: Sequence[Message], params: SamplingParams, k: int
    ) -> list[Completion]:
        """``k`` completions (1 <= k <= 16), each with its own ``finish_reason``. A request
        with a ``seed`` gives the same ``k`` answers every time where the backend can promise
        it (sample ``i`` seeded ``seed + i`` on the embedded backend). Summed, the usages are
        what the call cost: where the prompt was read once for all, it is counted once (on
        the first completion), so ``k`` samples never cost more than ``k`` calls. Cancellation
        as for ``complete``."""
        ...


async def collect(stream: AsyncIterator[Delta]) -> Completion:
    """Drain a stream into one ``Completion`` (for backends that only generate by streaming)."""
    parts: list[str] = []
    tool_calls: list[Mapping[str, Any]] = []
    logprobs: list[TokenLogprob] = []
    finish_reason = "stop"
    usage = Usage()
    async for delta in stream:
        parts.append(delta.text)
        tool_calls.extend(delta.tool_calls)
        logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            finish_reason = delta.finish_reason
        if delta.usage is not None:
            usage = delta.usage
    return Completion("".join(parts), finish_reason, usage, tuple(tool_calls), tuple(logprobs))
