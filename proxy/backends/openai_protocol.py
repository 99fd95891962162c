"""What every OpenAI-compatible peer speaks, shared by the ``openai``/``vllm`` backend and the
``litellm`` backend: stream chunks assembled into deltas (``StreamState``), usage, logprobs,
and the proxy's error for an upstream's error status (``status_error``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from proxy.errors import BackendError, BackendTimeout, ContextLengthExceeded, UpstreamRejected
from proxy.results import TokenLogprob, Usage

from .base import Delta, Embeddings

log = structlog.get_logger(__name__)

ERROR_TEXT_LIMIT = 500


class StreamState:
    """What a stream has told so far: finish reason, usage, tool-call fragments, chunk count."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.done = False
        self.chunks = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.tool_calls: dict[int, dict[str, Any]] = {}

    def feed(self, chunk: Any) -> Delta | None:
        """Take one ``chat.completion.chunk`` or ``text_completion`` chunk (parsed JSON); the
        text delta it carries, if any."""
        if not isinstance(chunk, dict):
            raise BackendError(f"model {self.model_id} sent a malformed stream chunk")
        if chunk.get("error") is not None:
            raise BackendError(f"model {self.model_id} failed mid-stream: {error_message(chunk)}")
        if chunk.get("usage"):
            self.usage = parse_usage(chunk["usage"])
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta") or {}
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        for fragment in delta.get("tool_calls") or ():
            self.chunks += 1
            self.add_tool_call(fragment)
        # A chat chunk's text is its delta's content; a text completion chunk's, its text.
        text = delta.get("content") if "delta" in choice else choice.get("text")
        if not text:
            return None
        self.chunks += 1
        return Delta(text=text, logprobs=logprobs_of(choice))

    def add_tool_call(self, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index")
        call = self.tool_calls.setdefault(
            index if isinstance(index, int) else len(self.tool_calls),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if fragment.get("id"):
            call["id"] = fragment["id"]
        function = fragment.get("function") or {}
        for part in ("name", "arguments"):
            if function.get(part):
                call["function"][part] += function[part]

    def finish(self) -> Delta:
        """The last delta: finish reason, usage and the assembled tool calls."""
        if not self.done and self.finish_reason is None:
            raise BackendError(f"model {self.model_id}: the stream ended before it finished")
        calls = tuple(self.tool_calls[i] for i in sorted(self.tool_calls))
        return Delta(
            tool_calls=calls,
            finish_reason=self.finish_reason or ("tool_calls" if calls else "stop"),
            usage=self.usage or Usage(0, self.chunks),
        )


def parse_usage(usage: Any) -> Usage:
    """OpenAI's ``usage`` object; cached prompt tokens are not counted as evaluated."""
    if not isinstance(usage, Mapping):
        return Usage()
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    evaluated = prompt - int(cached) if cached is not None else None
    return Usage(prompt, completion, evaluated)


def orjson_loads(raw: bytes, model_id: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BackendError(f"model {model_id} sent a body that is not JSON") from exc


def logprobs_of(choice: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    """The token entries of a choice's (or chunk choice's) ``logprobs.content``."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    return tuple(entry for entry in content or () if isinstance(entry, Mapping))


_OVERFLOW_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
_OVERFLOW_TEXTS = (
    "maximum context length",  # OpenAI, vLLM
    "context length",
    "context size",  # llama.cpp server
    "context window",  # litellm, TGI
    "too many tokens",
)


def is_context_overflow(detail: str, code: str | None = None) -> bool:
    """Whether an upstream's 400 says the prompt does not fit its context (by OpenAI's code,
    llama.cpp server's type, or the words vLLM, TGI and others use)."""
    if code in _OVERFLOW_CODES:
        return True
    lowered = detail.lower()
    return any(text in lowered for text in _OVERFLOW_TEXTS)


def status_error(status: int, detail: str, model_id: str, code: str | None = None) -> BackendError:
    """The proxy's error for an upstream's error status (the table in the module docstring);
    ``code`` is the error body's ``code`` or ``type`` when it had one."""
    log.warning("backend.upstream_error", model=model_id, status=status)
    if status in (401, 403, 404):
        return BackendError(
            f"model {model_id}: the upstream refused the proxy ({status}: {detail})"
        )
    if status == 408:
        return BackendTimeout(f"model {model_id}: the upstream timed out ({detail})")
    if status == 429 or status >= 500:
        return BackendError(f"model {model_id}: upstream error {status}: {detail}")
    if status in (400, 413, 422) and is_context_overflow(detail, code):
        return ContextLengthExceeded(f"model {model_id}: {detail}")
    return UpstreamRejected(detail, status_code=status)


def parse_embeddings(body: Any, model_id: str) -> Embeddings:
    """An OpenAI ``list`` of ``embedding`` objects, in input order (they may arrive out of it)."""
    try:
        items = sorted(body["data"], key=lambda item: item["index"])
        vectors = tuple(tuple(float(x) for x in item["embedding"]) for item in items)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"model {model_id} sent embeddings in an unknown shape") from exc
    usage = body.get("usage") if isinstance(body, dict) else None
    prompt = usage.get("prompt_tokens", 0) if isinstance(usage, dict) else 0
    return Embeddings(vectors, Usage(int(prompt), 0))


def error_code(body: Any) -> str | None:
    """The ``code`` (else ``type``) of an error body in OpenAI's or llama.cpp server's shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        for key in ("code", "type"):
            if isinstance(error.get(key), str):
                return str(error[key])
    return None


def error_message(body: Any) -> str:
    """The human message of an error body in OpenAI's, FastAPI's or a plain shape."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:ERROR_TEXT_LIMIT]
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:ERROR_TEXT_LIMIT]
    return str(body)[:ERROR_TEXT_LIMIT]
