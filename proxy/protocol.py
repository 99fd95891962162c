"""The OpenAI Chat Completions request as clients send it (the bodies sent back are
``proxy.response``'s).

Requests are validated strictly (wrong types are errors, not coerced). Every field of OpenAI's
request is either served, or refused by name (``REFUSED``: 400 ``unsupported_parameter``), or,
for the few that only label a request (``store``, ``metadata``, ``service_tier``,
``prompt_cache_key``, ``safety_identifier``, ``user``), accepted without effect on the answer.
Fields OpenAI does not define are tolerated, as OpenAI adds new ones, and logged at debug. A
validation failure becomes ``InvalidRequest`` with ``param`` naming the field the way OpenAI's
SDK reports it (``messages[0].content``), never FastAPI's 422.

A request uses a capability (``routing.backend_options.CAPABILITIES``) when it sends tools, a
JSON ``response_format``, ``logprobs`` or image parts; the planner then considers only models
that have it (``ChatCompletionRequest.facts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from proxy.backends.base import SamplingParams
from proxy.errors import InvalidRequest
from proxy.job import Job
from proxy.schema_bounds import check_schema
from routing.decision import RequestFacts
from routing.estimate import estimate_json_tokens, estimate_prompt_tokens

log = structlog.get_logger(__name__)

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(BaseModel):
    """A part of a message's content: ``text``, ``image_url`` (needs ``vision``); other kinds
    (audio, files) are refused."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text", "image_url"]
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(p.type == "image_url" for p in self.content)

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
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
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
        # docs/architecture.md, "PeRFICS": `max_tokens or max_completion_tokens` (they differ
        # only when both are sent).
        return self.max_tokens or self.max_completion_tokens

    @property
    def forces_tool_call(self) -> bool:
        """The request sends tools and a ``tool_choice`` that forbids a text answer
        (``required`` or a named function); with ``auto``, ``none`` or none the model may
        decline them."""
        return bool(self.tools) and self.tool_choice not in (None, "auto", "none")

    def needs(self) -> frozenset[str]:
        """The capabilities this request uses: ``tools`` only when a call is forced."""
        needed: set[str] = set()
        if self.forces_tool_call:
            needed.add("tools")
        if self.response_format is not None and self.response_format.type != "text":
            needed.add("json_schema")
        if self.logprobs:
            needed.add("logprobs")
        if any(message.has_images() for message in self.messages):
            needed.add("vision")
        return frozenset(needed)

    def facts(self, headers: Mapping[str, str], *, raw: bool = False) -> RequestFacts:
        """What the decision depends on (``routing.decision``); ``raw`` (a text completion)
        is never refined."""
        messages = self.backend_messages()
        return RequestFacts(
            model=self.model,
            headers=headers,
            perfics=self.perfics,
            last_user_text=self.last_user_text(),
            prompt_tokens=estimate_prompt_tokens(messages),
            max_tokens=self.answer_limit,
            choices=self.n,
            needs=self.needs(),
            optional_tools=bool(self.tools) and not self.forces_tool_call,
            tool_tokens=estimate_json_tokens(self.tools) if self.tools else 0,
            refinable=not raw,
        )

    def job(self, *, raw: bool = False) -> Job:
        """What the pipeline serves for this request (``proxy.job``)."""
        return Job(tuple(self.backend_messages()), self.sampling(), self.n, raw)

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""

    def backend_messages(self) -> list[dict[str, Any]]:
        return [message.to_backend() for message in self.messages]

    def sampling(self) -> SamplingParams:
        """The call's generation settings, the request's tools among them."""
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
            parallel_tool_calls=self.parallel_tool_calls,
            logprobs=self.logprobs or None,
            top_logprobs=self.top_logprobs if self.logprobs else None,
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
    return validate_chat_request(decode_body(raw))


def decode_body(raw: bytes) -> dict[str, Any]:
    """A request body decoded as one JSON object no deeper than ``MAX_DEPTH``; raises
    ``InvalidRequest`` (``invalid_json``, ``too_deep``)."""
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
    return data


def validate_chat_request(data: Mapping[str, Any]) -> ChatCompletionRequest:
    """Validate a decoded request body (or one built from another wire format), raising
    ``InvalidRequest`` naming the bad field."""
    try:
        request = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    _check_schemas(request)
    if request.model_extra:
        _refuse_unserved(request.model_extra)
        log.debug("request.unknown_fields", count=len(request.model_extra))  # names are content
    if request.top_logprobs and not request.logprobs:
        raise InvalidRequest(
            "'top_logprobs' requires 'logprobs': true", param="top_logprobs", code="invalid_value"
        )
    return request


REFUSED: dict[str, str] = {
    "logit_bias": "token biases are not applied by this proxy",
    "audio": "audio output is not served",
    "modalities": "only text output is served",
    "prediction": "predicted outputs are not served",
    "web_search_options": "web search is not served",
    "functions": "use 'tools' (the deprecated 'functions' is not served)",
    "function_call": "use 'tool_choice' (the deprecated 'function_call' is not served)",
    "reasoning_effort": "no reasoning model is served",
    "verbosity": "'verbosity' is not served",
}
"""OpenAI request fields this proxy does not serve, refused when set to anything but their
default, with why."""

_DEFAULTS: dict[str, Any] = {"logit_bias": {}, "modalities": ["text"]}


def _refuse_unserved(extra: Mapping[str, Any]) -> None:
    for name, why in REFUSED.items():
        if name in extra and extra[name] is not None and extra[name] != _DEFAULTS.get(name):
            raise InvalidRequest(
                f"'{name}' is not supported: {why}", param=name, code="unsupported_parameter"
            )


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


def invalid_from(exc: ValidationError) -> InvalidRequest:
    """The 400 for a validation failure, naming the field as OpenAI's SDK reports it."""
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
