"""Tool calling on a model without an API for it: the embedded llama.cpp backend.

A model entry that lists the ``tools`` capability gets:

- **the tools in its prompt.** A chat template that takes ``tools`` (it mentions them) gets
  them as its ``tools`` variable; any other gets one system message listing each function
  with its JSON Schema and the reply format, ``{"name": ..., "arguments": {...}}``. Earlier
  tool calls in the conversation are rendered in that format, and ``tool`` results as turns
  of their own.
- **calls that parse.** ``tool_choice: "required"`` or a named function holds the model to a
  grammar built from the functions' ``parameters`` (bounded, like every client schema, by
  ``proxy.schema_bounds``), so the answer is always a call with valid arguments. With
  ``auto`` the model may answer in text; an answer that is exactly a call to one of the tools
  becomes one. ``none`` renders the tools and never turns the answer into a call.

``ToolUse.from_params`` reads a request's tools; ``to_calls`` turns generated text into
OpenAI ``tool_calls`` (or None: a plain answer).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.errors import InvalidRequest

from .base import Message, SamplingParams


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A request's functions (``name -> parameters schema``) and how it wants them used:
    ``auto``, ``none``, ``required``, or the name of the one function to call."""

    functions: Mapping[str, Mapping[str, Any]]
    descriptions: Mapping[str, str]
    choice: str

    @classmethod
    def from_params(cls, params: SamplingParams) -> ToolUse | None:
        if not params.tools:
            return None
        functions: dict[str, Mapping[str, Any]] = {}
        descriptions: dict[str, str] = {}
        for index, tool in enumerate(params.tools):
            function = tool.get("function") if tool.get("type") == "function" else None
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                raise InvalidRequest(
                    f"tools[{index}] must be a function with a name", param=f"tools[{index}]"
                )
            name = function["name"]
            functions[name] = function.get("parameters") or {"type": "object", "properties": {}}
            descriptions[name] = str(function.get("description") or "")
        return cls(functions, descriptions, _choice(params.tool_choice, functions))

    @property
    def forced(self) -> bool:
        return self.choice not in ("auto", "none")

    def schema(self) -> dict[str, Any]:
        """The JSON Schema a forced call is held to."""
        names = list(self.functions) if self.choice == "required" else [self.choice]
        calls = [
            {
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": self.functions[name]},
                "required": ["name", "arguments"],
            }
            for name in names
        ]
        return calls[0] if len(calls) == 1 else {"anyOf": calls}

    def system_message(self) -> str:
        """The tools as a system message, for templates that do not take ``tools``."""
        lines = [
            "You can call these functions. To call one, reply with only a JSON object "
            'of the form {"name": "<function name>", "arguments": {<arguments>}}.'
        ]
        for name, parameters in self.functions.items():
            description = self.descriptions.get(name)
            lines.append(
                f"- {name}: {description}. Arguments (JSON Schema): {json.dumps(parameters)}"
                if description
                else f"- {name}. Arguments (JSON Schema): {json.dumps(parameters)}"
            )
        if self.forced:
            lines.append("Reply with a function call now.")
        return "\n".join(lines)

    def to_calls(self, text: str) -> tuple[dict[str, Any], ...] | None:
        """The OpenAI ``tool_calls`` that ``text`` makes, or None when it is not a call to
        one of the tools (or tools may not be called)."""
        if self.choice == "none":
            return None
        try:
            call = json.loads(text.strip())
        except ValueError:
            return None
        if not (
            isinstance(call, dict)
            and call.get("name") in self.functions
            and isinstance(call.get("arguments"), dict)
        ):
            return None
        return (
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
            },
        )


def _choice(tool_choice: Any, functions: Mapping[str, Any]) -> str:
    if tool_choice is None:
        return "auto"
    if tool_choice in ("auto", "none", "required"):
        return str(tool_choice)
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if name in functions:
            return str(name)
        raise InvalidRequest(
            f"tool_choice names '{str(name)[:64]}', which is not among the tools",
            param="tool_choice",
        )
    raise InvalidRequest(
        "tool_choice must be auto, none, required or a function", param="tool_choice"
    )


def with_tools(
    messages: Sequence[Message], tools: ToolUse, *, template_takes_tools: bool
) -> list[dict[str, Any]]:
    """The conversation ready for a template: earlier calls written as the reply format,
    and, unless the template takes ``tools`` itself, the tools as a leading system message."""
    rendered: list[dict[str, Any]] = []
    for message in messages:
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and calls:
            written = [
                json.dumps(
                    {
                        "name": call.get("function", {}).get("name"),
                        "arguments": _arguments(call.get("function", {}).get("arguments")),
                    }
                )
                for call in calls
            ]
            rendered.append({"role": "assistant", "content": "\n".join(written)})
        else:
            rendered.append(dict(message))
    if template_takes_tools:
        return rendered
    return [{"role": "system", "content": tools.system_message()}, *rendered]


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw
