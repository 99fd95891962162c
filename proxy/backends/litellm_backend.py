"""A backend for any provider litellm speaks to (``model: "anthropic/claude-..."``, ...).

litellm is imported lazily, in ``start()``, and configured so that it opens no connection the
policy does not name: ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (its cost map is otherwise fetched
from the network at import) and ``LITELLM_OFFLINE_MODE=true`` (its other self-initiated
fetches: tokenizers, header catalogs) are set in ``os.environ`` before the import; telemetry,
callbacks and message logging are off; unsupported parameters are dropped rather than refused.
litellm's own retries are off (``max_retries=0``): falling back is the pipeline's decision.
The key comes from the variable named by ``api_key_env``; without one litellm looks for its
provider's usual variable, and an ``openai/...`` model refuses to send without any key, even
to a keyless local server (name a variable holding any placeholder).

Errors are translated once, most specific first::

    litellm.Timeout (or a timeout in the cause chain)   BackendTimeout
    litellm.APIConnectionError, ServiceUnavailableError BackendUnavailable
        (or a connection error in the cause chain: litellm reports a refused connection as 500)
    litellm.ContextWindowExceededError                  ContextLengthExceeded (400)
    any other status error                              as ``openai_protocol.status_error``:
        BadRequest, UnprocessableEntity, other 4xx      UpstreamRejected with the status
        Authentication, PermissionDenied, NotFound      BackendError (the proxy's key or model)
        RateLimit, 5xx                                  BackendError (retryable)
    any other litellm / openai error                    BackendError
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from proxy.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContextLengthExceeded,
    UpstreamRejected,
)
from proxy.logs import upstream_request_id
from routing.policy import LiteLLMOptions, ModelSpec

from .base import Completion, Delta, Embeddings, Message, SamplingParams
from .openai_protocol import StreamState, parse_embeddings, parse_usage, status_error

if TYPE_CHECKING:
    from . import BackendSettings

log = structlog.get_logger(__name__)


def import_litellm() -> Any:
    """litellm, imported with no network of its own (see the module docstring)."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["LITELLM_OFFLINE_MODE"] = "true"
    import litellm

    litellm.telemetry = False
    litellm.success_callback = []
    litellm.failure_callback = []
    litellm.callbacks = []
    litellm.turn_off_message_logging = True
    litellm.suppress_debug_info = True
    # A parameter the provider does not take is refused (400), never silently dropped.
    litellm.drop_params = False
    return litellm


class LiteLLMBackend:
    """One model behind ``litellm.acompletion``."""

    serial = False

    @classmethod
    def from_policy(cls, spec: ModelSpec, settings: BackendSettings) -> LiteLLMBackend:
        return cls(spec)

    def __init__(self, spec: ModelSpec) -> None:
        self.model_id = spec.id
        self._spec = spec
        options = spec.options if isinstance(spec.options, LiteLLMOptions) else LiteLLMOptions()
        self._options = options
        self._litellm: Any = None
        self._api_key: str | None = None

    @property
    def ready(self) -> bool:
        return self._litellm is not None

    async def start(self) -> None:
        if self._litellm is not None:
            return
        env = self._spec.api_key_env
        self._api_key = os.environ.get(env) if env else None
        # The import takes seconds; keep the event loop free meanwhile.
        self._litellm = await asyncio.to_thread(import_litellm)
        log.info("backend.started", model=self.model_id, provider="litellm")

    async def aclose(self) -> None:
        self._litellm = None

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        response = await self._call(messages, params, stream=False)
        try:
            choice = response.choices[0]
            message = choice.message
            calls = tuple(_plain(call) for call in (getattr(message, "tool_calls", None) or ()))
            usage = getattr(response, "usage", None)
            return Completion(
                text=message.content or "",
                finish_reason=choice.finish_reason or "stop",
                usage=parse_usage(_plain(usage) if usage is not None else None),
                tool_calls=calls,
            )
        except (AttributeError, IndexError, TypeError) as exc:
            raise BackendError(f"model {self.model_id} sent a completion without choices") from exc

    async def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        response = await self._call(messages, params, stream=True)
        state = StreamState(self.model_id)
        try:
            async for chunk in response:
                delta = state.feed(_chunk_dict(chunk))
                if delta is not None:
                    yield delta
        except Exception as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            await response.aclose()
        state.done = True
        yield state.finish()

    async def embed(self, inputs: Sequence[str], dimensions: int | None) -> Embeddings:
        """``litellm.aembedding``, for a provider's embedding model."""
        litellm = self._litellm
        if litellm is None:
            raise BackendUnavailable(f"model {self.model_id} is not started")
        kwargs: dict[str, Any] = dict(self._options.params)
        if dimensions is not None:
            kwargs["dimensions"] = dimensions
        if self._spec.api_base:
            kwargs["api_base"] = self._spec.api_base[0]
        if self._api_key:
            kwargs["api_key"] = self._api_key
        try:
            response = await litellm.aembedding(
                model=self._spec.model,
                input=list(inputs),
                timeout=self._options.timeout_s,
                **kwargs,
            )
        except Exception as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        return parse_embeddings(_plain(response), self.model_id)

    async def stream_text(self, prompt: str, params: SamplingParams) -> AsyncGenerator[Delta, None]:
        """Raw text continuation through ``litellm.atext_completion``."""
        response = await self._call([], params, stream=True, prompt=prompt)
        state = StreamState(self.model_id)
        try:
            async for chunk in response:
                delta = state.feed(_text_chunk_dict(chunk))
                if delta is not None:
                    yield delta
        except Exception as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        state.done = True
        yield state.finish()

    async def _call(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        *,
        stream: bool,
        prompt: str | None = None,
    ) -> Any:
        litellm = self._litellm
        if litellm is None:
            raise BackendUnavailable(f"model {self.model_id} is not started")
        kwargs = params.to_openai()
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        if self._spec.api_base:
            kwargs["api_base"] = self._spec.api_base[0]
        if self._api_key:
            kwargs["api_key"] = self._api_key
        kwargs["max_retries"] = 0
        rid = upstream_request_id()
        if rid:
            kwargs["extra_headers"] = {"x-request-id": rid}
        kwargs.update(self._options.params)
        try:
            if prompt is not None:
                return await litellm.atext_completion(
                    model=self._spec.model,
                    prompt=prompt,
                    timeout=self._options.timeout_s,
                    stream=stream,
                    **kwargs,
                )
            return await litellm.acompletion(
                model=self._spec.model,
                messages=[dict(m) for m in messages],
                timeout=self._options.timeout_s,
                stream=stream,
                **kwargs,
            )
        except Exception as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    def _translate(self, exc: Exception) -> Exception:
        """The proxy's error for one of litellm's; anything else is returned unchanged."""
        import openai

        errors = self._litellm.exceptions if self._litellm is not None else None
        if errors is None or not isinstance(exc, openai.OpenAIError):
            return exc
        model = self.model_id
        # litellm reports a refused connection as a 500; the cause chain still says what it was.
        causes = _causes(exc)
        if any(isinstance(c, errors.Timeout | openai.APITimeoutError) for c in causes):
            return BackendTimeout(f"model {model}: the upstream timed out")
        unreachable = errors.APIConnectionError | errors.ServiceUnavailableError
        if any(isinstance(c, unreachable | openai.APIConnectionError) for c in causes):
            return BackendUnavailable(f"model {model}: the upstream is unreachable")
        message = str(getattr(exc, "message", "") or exc)
        if isinstance(exc, errors.ContextWindowExceededError):
            return ContextLengthExceeded(f"model {model}: {message}")
        if isinstance(exc, errors.UnsupportedParamsError):
            return UpstreamRejected(message, status_code=400)
        if isinstance(exc, openai.APIStatusError):
            return status_error(exc.status_code, message, model)
        return BackendError(f"model {model}: upstream error ({type(exc).__name__})")


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, nearest first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _text_chunk_dict(chunk: Any) -> dict[str, Any]:
    """A text completion stream chunk of litellm's, in the fields ``StreamState`` reads."""
    raw = _plain(chunk) if not isinstance(chunk, dict) else chunk
    return raw if isinstance(raw, dict) else {}


def _chunk_dict(chunk: Any) -> dict[str, Any]:
    """The few fields of a litellm stream chunk that ``StreamState`` reads, without dumping it."""
    out: dict[str, Any] = {}
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        out["usage"] = _plain(usage)
    choices = getattr(chunk, "choices", None) or ()
    if choices:
        choice = choices[0]
        delta = getattr(choice, "delta", None)
        calls = getattr(delta, "tool_calls", None) or ()
        out["choices"] = [
            {
                "finish_reason": getattr(choice, "finish_reason", None),
                "delta": {
                    "content": getattr(delta, "content", None),
                    "tool_calls": [_plain(call) for call in calls],
                },
            }
        ]
    return out


def _plain(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    dump = getattr(value, "model_dump", None)
    return dict(dump()) if callable(dump) else dict(vars(value))
