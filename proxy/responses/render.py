"""What a client of the Responses API receives: the ``response`` object (``response_object``),
the conversation's items as ``input_items`` lists them (``input_item``) and the stream of typed
events (``ResponseFrames``) OpenAI sends for a response::

    response.created, response.in_progress
    response.output_item.added                    a message (or a function call)
    response.content_part.added
    response.output_text.delta ...                the answer as it is written
    response.output_text.done, response.content_part.done, response.output_item.done
    response.function_call_arguments.delta / .done   for a function call
    response.completed | response.incomplete      the whole response, usage included

Each event is ``event: TYPE`` then ``data: {"type": TYPE, "sequence_number": N, ...}``;
hidden rounds send comment lines as chat streams do, and a failure after the headers is
``response.failed`` carrying the error. The response object carries the ``perfics`` outcome
object as chat completions do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from proxy.errors import PerficsError
from proxy.events import AnswerDelta, Done, Event, Finished, RoundStarted, Sampled
from proxy.response.body import perfics_object
from proxy.response.stream import EventFrames, comment, replay_pieces
from proxy.responses.request import ResponsesRequest
from proxy.results import Outcome, Refined, TokenLogprob, Usage
from routing.decision import Decision

Save = Callable[[dict[str, Any]], Awaitable[None]]
"""Keeps a finished response object (``store: true``) before the client is told it is done."""


def response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def response_object(
    request: ResponsesRequest,
    *,
    id: str,
    created_at: int,
    model: str,
    status: str,
    output: Sequence[Mapping[str, Any]] = (),
    usage: Usage | None = None,
    error: Mapping[str, Any] | None = None,
    incomplete_reason: str | None = None,
    perfics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object, echoing the request's settings as OpenAI does."""
    body: dict[str, Any] = {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": dict(error) if error is not None else None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": model,
        "output": [dict(item) for item in output],
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": request.store,
        "temperature": request.temperature,
        "text": {
            "format": (
                request.text.format.model_dump(by_alias=True, exclude_none=True)
                if request.text is not None and request.text.format is not None
                else {"type": "text"}
            )
        },
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": list(request.tools or ()),
        "top_p": request.top_p,
        "truncation": request.truncation or "disabled",
        "usage": usage_object(usage) if usage is not None else None,
        "user": request.user,
        "metadata": dict(request.metadata or {}),
    }
    if perfics is not None:
        body["perfics"] = dict(perfics)
    return body


def usage_object(usage: Usage) -> dict[str, Any]:
    """``usage`` in the Responses shape: input and output tokens, summed over every call."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def output_items(result: Refined) -> list[dict[str, Any]]:
    """The output items of one answer: its function calls, or one assistant message."""
    if result.tool_calls:
        return [function_call_item(call) for call in result.tool_calls]
    return [message_item(_item_id("msg"), result.text, result.logprobs)]


def message_item(
    item_id: str, text: str, logprobs: Sequence[TokenLogprob] = (), *, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [] if status != "completed" else [text_part(text, logprobs)],
    }


def text_part(text: str, logprobs: Sequence[TokenLogprob] = ()) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": list(logprobs)}


def function_call_item(call: Mapping[str, Any], *, status: str = "completed") -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "function_call",
        "id": _item_id("fc"),
        "call_id": call.get("id") or _item_id("call"),
        "name": function.get("name"),
        "arguments": str(function.get("arguments") or "") if status == "completed" else "",
        "status": status,
    }


def input_item(item: Mapping[str, Any], fallback_id: str) -> dict[str, Any]:
    """A stored conversation item as ``GET /v1/responses/{id}/input_items`` lists it, in
    OpenAI's shape whatever form the client sent: a message's string ``content`` as one
    ``input_text`` part (``output_text`` for the assistant's), every item with an ``id`` and a
    ``status``."""
    shown = {"id": item.get("id") or fallback_id, **item}
    kind = item["type"]
    if kind == "message":
        assistant = item["role"] == "assistant"
        content = item["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        shown["content"] = [_shown_part(part, assistant=assistant) for part in parts]
    elif kind == "reasoning":
        shown.setdefault("summary", [])
        return shown
    shown.setdefault("status", "completed")
    return shown


def _shown_part(part: Mapping[str, Any], *, assistant: bool) -> dict[str, Any]:
    if part["type"] == "input_image":
        return {"type": "input_image", "image_url": part.get("image_url"), "detail": "auto"}
    if part["type"] == "refusal":
        return {"type": "refusal", "refusal": part.get("text", part.get("refusal", ""))}
    text = part.get("text", "")
    if assistant:  # an earlier answer's part keeps its annotations and logprobs
        return {**text_part(text), **{k: v for k, v in part.items() if k != "type"}}
    return {"type": "input_text", "text": text}


def finished_object(
    request: ResponsesRequest,
    decision: Decision,
    outcome: Outcome,
    *,
    id: str,
    created_at: int,
    output: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The response object of a finished request (``output``: its items as already streamed;
    by default made from the answer)."""
    result = outcome.choices[0]
    incomplete = result.finish_reason == "length"
    return response_object(
        request,
        id=id,
        created_at=created_at,
        model=outcome.model,
        status="incomplete" if incomplete else "completed",
        output=output_items(result) if output is None else output,
        usage=outcome.usage,
        incomplete_reason="max_output_tokens" if incomplete else None,
        perfics=perfics_object(decision, outcome, trace=decision.declarations.trace),
    )


class ResponseFrames(EventFrames):
    """The events of one streamed response. ``save`` keeps the finished object (store) before
    ``response.completed`` goes out."""

    def __init__(
        self,
        request: ResponsesRequest,
        decision: Decision,
        model: str,
        *,
        id: str,
        save: Save | None,
    ) -> None:
        super().__init__()
        self.request = request
        self.decision = decision
        self.model = model
        self.id = id
        self.save = save
        self.created_at = int(time.time())
        self.sequence = 0
        self.message: dict[str, Any] | None = None  # the message item being written
        self.text: list[str] = []
        self.output: list[dict[str, Any]] = []
        self.result: Refined | None = None

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def shell(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(
            self.request,
            id=self.id,
            created_at=self.created_at,
            model=self.model,
            status=status,
            output=self.output,
            **extra,
        )

    def opening(self) -> list[bytes]:
        shell = self.shell("in_progress")
        return [
            self.event("response.created", response=shell),
            self.event("response.in_progress", response=shell),
        ]

    async def frames(self, item: Event) -> list[bytes]:
        if isinstance(item, RoundStarted):
            return [comment(f"perfics round {item.round}/{item.of}")]
        if isinstance(item, Sampled):
            return [comment(f"perfics sampling {item.made}/{item.of}")]
        if isinstance(item, AnswerDelta):
            return self.delta(item.text, item.logprobs)
        if isinstance(item, Finished):
            self.result = item.result
            return self.answer_done(item.result)
        if isinstance(item, Done):
            return await self.done(item.outcome)
        return []

    def delta(self, text: str, logprobs: Sequence[TokenLogprob] = ()) -> list[bytes]:
        frames: list[bytes] = []
        if self.message is None:
            self.message = message_item(_item_id("msg"), "", status="in_progress")
            frames.append(
                self.event("response.output_item.added", output_index=0, item=self.message)
            )
            frames.append(
                self.event(
                    "response.content_part.added",
                    item_id=self.message["id"],
                    output_index=0,
                    content_index=0,
                    part=text_part(""),
                )
            )
        self.text.append(text)
        frames.append(
            self.event(
                "response.output_text.delta",
                item_id=self.message["id"],
                output_index=0,
                content_index=0,
                delta=text,
                logprobs=list(logprobs),
            )
        )
        return frames

    def answer_done(self, result: Refined) -> list[bytes]:
        frames: list[bytes] = []
        if not result.tool_calls:
            if not result.streamed and result.text:
                for piece in replay_pieces(result.text):
                    frames += self.delta(piece)
            if self.message is None:
                frames += self.delta("")
            return frames + self.message_done(result.logprobs)
        if self.message is not None:
            # Text streamed before the model turned to a call: it is an output item of its own.
            frames += self.message_done(())
        for call in result.tool_calls:
            index = len(self.output)
            item = function_call_item(call)
            opened = {**item, "arguments": "", "status": "in_progress"}
            frames.append(self.event("response.output_item.added", output_index=index, item=opened))
            for piece in replay_pieces(item["arguments"]):
                frames.append(
                    self.event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=piece,
                    )
                )
            frames.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            frames.append(self.event("response.output_item.done", output_index=index, item=item))
            self.output.append(item)
        return frames

    def message_done(self, logprobs: Sequence[TokenLogprob]) -> list[bytes]:
        """The events that close the message being written; it joins the output."""
        assert self.message is not None
        text = "".join(self.text)
        item = message_item(self.message["id"], text, logprobs)
        part = item["content"][0]
        ids = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        self.output.append(item)
        self.message = None
        return [
            self.event("response.output_text.done", **ids, text=text, logprobs=part["logprobs"]),
            self.event("response.content_part.done", **ids, part=part),
            self.event("response.output_item.done", output_index=0, item=item),
        ]

    async def done(self, outcome: Outcome) -> list[bytes]:
        body = finished_object(
            self.request,
            self.decision,
            outcome,
            id=self.id,
            created_at=self.created_at,
            output=self.output,
        )
        if self.save is not None:
            await self.save(body)
        return [self.event(f"response.{body['status']}", response=body)]

    def closing(self) -> list[bytes]:
        return []

    def failed(self, exc: PerficsError) -> list[bytes]:
        error = {"code": exc.code or exc.error_type, "message": exc.message}
        return [self.event("response.failed", response=self.shell("failed", error=error))]
