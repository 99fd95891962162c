"""The OpenAI Responses request (``POST /v1/responses``) as clients send it, and its
translation into the chat request the pipeline serves (``proxy.protocol.ChatCompletionRequest``):
one pipeline, two wire formats.

    request = parse_responses_request(raw)
    items = [*previous_items, *request.input_items()]     # previous_response_id's, then these
    chat = request.to_chat(items)

Input items map onto chat messages: a ``message`` (``input_text``, ``output_text`` and
``input_image`` parts) onto a message of its role; consecutive ``function_call`` items onto one
assistant message with ``tool_calls``; a ``function_call_output`` onto a ``tool`` message;
``instructions`` onto a first system message (not carried over from a previous response, as
OpenAI does). ``reasoning`` items, which only reasoning models produce, are dropped. Function
tools, ``tool_choice``, ``text.format``, ``max_output_tokens``, ``temperature``, ``top_p``
and the ``perfics`` extension become their chat equivalents. Hosted tools (web search, file
search, computer use, ...), ``background``, ``conversation``, stored ``prompt`` templates and
``item_reference`` items are refused by name (400 ``unsupported_parameter``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.errors import InvalidRequest
from proxy.protocol import ChatCompletionRequest, decode_body, invalid_from, validate_chat_request

Item = dict[str, Any]


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text", "json_schema", "json_object"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    format: TextFormat | None = None


class ResponsesRequest(BaseModel):
    """The body of ``POST /v1/responses``."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    perfics: dict[str, Any] | None = None

    def input_items(self) -> list[Item]:
        """This request's ``input`` as items (a string is one user message)."""
        if isinstance(self.input, str):
            return [{"type": "message", "role": "user", "content": self.input}]
        return [_normalised(item, index) for index, item in enumerate(self.input)]

    def chat_tools(self) -> list[dict[str, Any]] | None:
        """The function tools in the chat shape (``{"type": "function", "function": ...}``)."""
        if not self.tools:
            return None
        tools: list[dict[str, Any]] = []
        for index, tool in enumerate(self.tools):
            kind = tool.get("type")
            if kind != "function":
                raise InvalidRequest(
                    f"tools of type '{str(kind)[:40]}' are not supported: only function tools "
                    "are served",
                    param=f"tools[{index}].type",
                    code="unsupported_parameter",
                )
            fields = ("name", "description", "parameters", "strict")
            function = {k: tool[k] for k in fields if tool.get(k) is not None}
            tools.append({"type": "function", "function": function})
        return tools

    def chat_tool_choice(self) -> str | dict[str, Any] | None:
        choice = self.tool_choice
        if isinstance(choice, dict):
            if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
                raise InvalidRequest(
                    "'tool_choice' must be auto, none, required or a function by name",
                    param="tool_choice",
                    code="unsupported_parameter",
                )
            return {"type": "function", "function": {"name": choice["name"]}}
        return choice

    def chat_response_format(self) -> dict[str, Any] | None:
        fmt = self.text.format if self.text is not None else None
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return {"type": "json_object"}
        if fmt.schema_ is None:
            raise InvalidRequest(
                "'text.format.schema' is required for type json_schema",
                param="text.format.schema",
                code="missing_required",
            )
        spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema_}
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        if fmt.description is not None:
            spec["description"] = fmt.description
        return {"type": "json_schema", "json_schema": spec}

    def to_chat(self, items: Sequence[Item]) -> ChatCompletionRequest:
        """The chat request the pipeline serves for the conversation ``items`` (a previous
        response's, then this request's)."""
        messages: list[dict[str, Any]] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        messages += chat_messages(items)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_completion_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "tools": self.chat_tools(),
            "tool_choice": self.chat_tool_choice(),
            "parallel_tool_calls": self.parallel_tool_calls,
            "response_format": self.chat_response_format(),
            "logprobs": True if self.top_logprobs else None,
            "top_logprobs": self.top_logprobs or None,
            "stream": self.stream,
            "perfics": self.perfics,
        }
        return validate_chat_request({k: v for k, v in body.items() if v is not None})


def chat_messages(items: Sequence[Item]) -> list[dict[str, Any]]:
    """The chat messages of a conversation given as Responses items."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": _chat_content(item["content"])})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
    return messages


def _chat_content(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part.get("image_url")}})
        else:
            parts.append({"type": "text", "text": part.get("text", "")})
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")
_REFUSED_ITEMS = {
    "item_reference": "item references are not served; send the items themselves",
    "file_search_call": "file search is not served",
    "web_search_call": "web search is not served",
    "computer_call": "computer use is not served",
    "computer_call_output": "computer use is not served",
    "image_generation_call": "image generation is not served",
    "code_interpreter_call": "the code interpreter is not served",
    "local_shell_call": "local shell calls are not served",
    "mcp_call": "MCP tools are not served",
}


def _normalised(item: Any, index: int) -> Item:
    """One input item checked and reduced to what the conversation needs; ``None`` type with
    a ``role`` is a message (the easy input form)."""
    where = f"input[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where, code="invalid_value")
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"'{where}.role' must be one of {', '.join(_ROLES)}",
                param=f"{where}.role",
                code="invalid_value",
            )
        return {"type": "message", "role": role, "content": _content(item.get("content"), where)}
    if kind == "function_call":
        _require_strings(item, where, "call_id", "name", "arguments")
        fields = ("call_id", "name", "arguments", "id")
        return {"type": "function_call", **{k: item[k] for k in fields if k in item}}
    if kind == "function_call_output":
        _require_strings(item, where, "call_id")
        if "output" not in item:
            raise _missing(f"{where}.output")
        return {
            "type": "function_call_output",
            "call_id": item["call_id"],
            "output": item["output"],
        }
    if kind == "reasoning":
        return {"type": "reasoning"}
    if kind in _REFUSED_ITEMS:
        raise InvalidRequest(
            f"'{where}': {_REFUSED_ITEMS[kind]}",
            param=f"{where}.type",
            code="unsupported_parameter",
        )
    raise InvalidRequest(
        f"'{where}.type' {str(kind)[:40]!r} is not an input item type",
        param=f"{where}.type",
        code="invalid_value",
    )


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _missing(f"{where}.content")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        name = f"{where}.content[{index}]"
        if kind in _TEXT_PARTS:
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise _missing(f"{name}.text")
            parts.append({"type": kind, "text": text})
        elif kind == "input_image":
            if not isinstance(part.get("image_url"), str):
                raise InvalidRequest(
                    f"'{name}': only images by 'image_url' are served",
                    param=f"{name}.image_url",
                    code="unsupported_parameter",
                )
            parts.append({"type": "input_image", "image_url": part["image_url"]})
        else:
            raise InvalidRequest(
                f"'{name}.type' {str(kind)[:40]!r} is not served (text and images are)",
                param=f"{name}.type",
                code="unsupported_parameter",
            )
    return parts


def _require_strings(item: Mapping[str, Any], where: str, *names: str) -> None:
    for name in names:
        if not isinstance(item.get(name), str):
            raise _missing(f"{where}.{name}")


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' is required", param=param, code="missing_required")


REFUSED: dict[str, str] = {
    "background": "background responses are not served",
    "conversation": "conversations are not served; use previous_response_id",
    "prompt": "stored prompt templates are not served",
    "max_tool_calls": "'max_tool_calls' is not served",
}
"""Responses fields this proxy does not serve, refused when set (to anything but false)."""


def parse_responses_request(raw: bytes) -> ResponsesRequest:
    """Decode and validate a ``POST /v1/responses`` body, raising ``InvalidRequest`` naming the
    bad field."""
    data = decode_body(raw)
    try:
        request = ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    for name, why in REFUSED.items():
        value = (request.model_extra or {}).get(name)
        if value not in (None, False):
            raise InvalidRequest(
                f"'{name}' is not supported: {why}", param=name, code="unsupported_parameter"
            )
    reasoning = (request.model_extra or {}).get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") not in (None, "none"):
        raise InvalidRequest(
            "'reasoning' is not supported: no reasoning model is served",
            param="reasoning",
            code="unsupported_parameter",
        )
    return request
