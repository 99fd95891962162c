"""The wire formats the chat endpoint serves (``proxy.app_chat``), each an ``Exchange``: the
chat request the pipeline serves, and how its answer is rendered. Chat completions are this
module's; the Responses API's is ``proxy.responses.exchange``, legacy text completions'
``proxy.completions``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson

from proxy.admission import Admission
from proxy.protocol import ChatCompletionRequest, parse_chat_request
from proxy.response import CompletionFrames, completion_body
from proxy.response.stream import EventFrames
from proxy.results import Outcome
from routing.decision import Decision


class Exchange(Protocol):
    """One request in one wire format: the chat request the pipeline serves (``chat``;
    ``raw``: its one message is a prompt to continue as it is), and how its answer is
    rendered, whole (``body``) or as a stream (``frames``)."""

    chat: ChatCompletionRequest
    raw: bool

    async def body(self, decision: Decision, outcome: Outcome) -> bytes: ...

    def frames(self, decision: Decision, model: str) -> EventFrames: ...


Parse = Callable[[bytes, Admission], Awaitable[Exchange]]
"""Reads a body into an ``Exchange`` for the caller its admission names (the Responses API
reads the conversation it continues from the store)."""


class ChatExchange:
    """``POST /v1/chat/completions``: OpenAI's ``chat.completion`` and its chunks."""

    raw = False

    def __init__(self, chat: ChatCompletionRequest) -> None:
        self.chat = chat

    async def body(self, decision: Decision, outcome: Outcome) -> bytes:
        chat = self.chat
        trace = decision.declarations.trace
        return orjson.dumps(
            completion_body(decision, outcome, logprobs=bool(chat.logprobs), trace=trace)
        )

    def frames(self, decision: Decision, model: str) -> EventFrames:
        return CompletionFrames(decision, self.chat, model)


async def parse_chat(raw: bytes, admission: Admission) -> Exchange:
    return ChatExchange(parse_chat_request(raw))
