"""OpenAI Chat Completions wire models: the request as clients send it, the bodies we send back.

Requests are validated strictly (wrong types are errors, not coerced) but tolerate fields this
proxy does not know, as OpenAI adds them; those are logged at debug and ignored. A validation
failure becomes ``InvalidRequest`` with ``param`` naming the field the way OpenAI's SDK
reports it (``messages[0].content``), never FastAPI's 422.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from proxy.backends.base import SamplingParams
from proxy.errors import InvalidRequest
from proxy.schema_bounds import check_schema

log = structlog.get_logger(__name__)

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""

    def to_backend(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    perfics: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _content_required(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        for index, message in enumerate(messages):
            if message.content is None and not (message.role == "assistant" and message.tool_calls):
                raise _MissingContent(index)
        return messages

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return stop

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def answer_limit(self) -> int | None:
        # DESIGN: `max_tokens or max_completion_tokens` (they differ only when both are sent).
        return self.max_tokens or self.max_completion_tokens

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""

    def backend_messages(self) -> list[dict[str, Any]]:
        return [message.to_backend() for message in self.messages]

    def sampling(self) -> SamplingParams:
        stop: tuple[str, ...] = (
            (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        )
        return SamplingParams(
            max_tokens=self.answer_limit,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            response_format=(
                self.response_format.model_dump(exclude_none=True)
                if self.response_format and self.response_format.type != "text"
                else None
            ),
            tools=self.tools,
            tool_choice=self.tool_choice,
        )


class _MissingContent(ValueError):
    def __init__(self, index: int) -> None:
        super().__init__(f"messages[{index}] has no content")
        self.index = index


MAX_DEPTH = 32
"""How deeply a request's JSON may nest. A chat request needs about 8 levels (a tool's
parameter schema a few more); deeper values only exhaust serialisers further on."""


def parse_chat_request(raw: bytes) -> ChatCompletionRequest:
    """Decode and validate a request body, raising ``InvalidRequest`` naming the bad field."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", code="invalid_json")
    for key, value in data.items():
        if isinstance(value, dict | list) and too_deep(value, MAX_DEPTH - 1):
            param = str(key)[:64]
            raise InvalidRequest(
                f"'{param}' nests more than {MAX_DEPTH} levels deep", param=param, code="too_deep"
            )
    try:
        request = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise _invalid_from(exc) from None
    _check_schemas(request)
    if request.model_extra:
        log.debug("request.unknown_fields", fields=sorted(request.model_extra))
    return request


def _check_schemas(request: ChatCompletionRequest) -> None:
    """The client's JSON Schemas become grammars: bounded here, before any model work."""
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        spec = fmt.json_schema
        if spec is None:
            raise InvalidRequest(
                "'response_format.json_schema' is required for type json_schema",
                param="response_format.json_schema",
                code="missing_required",
            )
        if "schema" in spec:
            check_schema(spec["schema"], "response_format.json_schema.schema")
    for index, tool in enumerate(request.tools or ()):
        function = tool.get("function")
        if isinstance(function, dict) and "parameters" in function:
            check_schema(function["parameters"], f"tools[{index}].function.parameters")


def too_deep(value: Any, limit: int) -> bool:
    """True when ``value`` holds objects or arrays nested more than ``limit`` levels (``value``
    itself is level 1). Iterative: a hostile value cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _invalid_from(exc: ValidationError) -> InvalidRequest:
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _MissingContent):
        param = f"messages[{cause.index}].content"
        return InvalidRequest(f"'{param}' is required", param=param, code="missing_required")
    param = _param_name(error["loc"])
    if error["type"] == "missing":
        return InvalidRequest(f"'{param}' is required", param=param, code="missing_required")
    return InvalidRequest(f"invalid '{param}': {error['msg']}", param=param, code="invalid_value")


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def _param_name(loc: Sequence[int | str]) -> str:
    """('messages', 0, 'content') -> 'messages[0].content'. Pydantic appends the union member
    it tried (``str``, ``list[TextPart]``, ``function-after[...]``); those are not fields."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part in _TYPE_TAGS or "[" in part:
            break
        else:
            name += f".{part}" if name else part
    return name


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: Sequence[Mapping[str, Any]],
    usage: Mapping[str, int],
    perfics: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": list(choices),
        "usage": dict(usage),
        "system_fingerprint": system_fingerprint(),
        "perfics": dict(perfics),
    }


@functools.cache
def system_fingerprint() -> str:
    """``perfics-VERSION``: which proxy build answered (OpenAI's field names the backend
    configuration; here the models differ per request and are named in ``perfics``)."""
    try:
        version = importlib.metadata.version("perfics-proxy")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"perfics-{version}"


def choice_body(
    index: int, text: str, finish_reason: str, tool_calls: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None}


def chunk_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: Sequence[Mapping[str, Any]],
    usage: Mapping[str, int] | None = None,
    perfics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": system_fingerprint(),
        "choices": list(choices),
    }
    if usage is not None:
        body["usage"] = dict(usage)
    if perfics is not None:
        body["perfics"] = dict(perfics)
    return body
