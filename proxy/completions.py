"""``POST /v1/completions``, OpenAI's legacy text completion (evaluation harnesses, editor
autocompletion), on the chat endpoint's path (``proxy.app_chat``): the prompt is continued as
it is, without a chat template, by the embedded model or the upstream's own ``/completions``,
and never refined (``not_refinable``); routing, budgets, keys, metrics and the ledger are the
chat request's.

Served: ``model``, ``prompt`` (a string, or a list holding one), ``max_tokens`` (16 when
absent, as OpenAI's), ``temperature``, ``top_p``, ``n``, ``stop``, ``seed``,
``presence_penalty``, ``frequency_penalty``, ``stream``, ``stream_options``, ``user`` and the
``perfics`` extension. Refused by name: several prompts or token arrays in one request,
``suffix`` (fill-in-the-middle), ``echo``, ``logprobs``, ``best_of`` above 1, ``logit_bias``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.admission import Admission
from proxy.errors import InvalidRequest
from proxy.events import AnswerDelta, Done, Event, Finished, RoundStarted, Sampled
from proxy.protocol import ChatCompletionRequest, decode_body, invalid_from, validate_chat_request
from proxy.response.body import perfics_object, system_fingerprint
from proxy.response.stream import EventFrames, comment, data, replay_pieces
from proxy.results import Outcome
from routing.decision import Decision

COMPLETIONS_PATH = "/v1/completions"
DEFAULT_MAX_TOKENS = 16


class CompletionRequest(BaseModel):
    """The body of ``POST /v1/completions``."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    prompt: str | list[str]
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = None
    perfics: dict[str, Any] | None = None

    def text(self) -> str:
        prompt = self.prompt
        if isinstance(prompt, str):
            return prompt
        if len(prompt) != 1:
            raise InvalidRequest(
                "one prompt per request is served; send each prompt in its own request",
                param="prompt",
                code="unsupported_parameter",
            )
        return prompt[0]

    def to_chat(self) -> ChatCompletionRequest:
        """The chat request the pipeline serves: the prompt as its one message."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": self.text()}],
            "max_tokens": self.max_tokens or DEFAULT_MAX_TOKENS,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "n": self.n,
            "stream": self.stream,
            "stream_options": self.stream_options,
            "stop": self.stop,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "perfics": self.perfics,
        }
        return validate_chat_request({k: v for k, v in body.items() if v is not None})


_REFUSED: dict[str, str] = {
    "suffix": "fill-in-the-middle ('suffix') is not served",
    "echo": "'echo' is not served",
    "logprobs": "'logprobs' is not served on /v1/completions (it is on /v1/chat/completions)",
    "logit_bias": "token biases are not applied by this proxy",
}
_DEFAULTS: dict[str, Any] = {"echo": False, "logit_bias": {}, "suffix": ""}


def parse_completion_request(raw: bytes) -> CompletionRequest:
    """Decode and validate a ``POST /v1/completions`` body, raising ``InvalidRequest`` naming
    the bad field."""
    data = decode_body(raw)
    if isinstance(data.get("prompt"), list) and any(
        not isinstance(item, str) for item in data["prompt"]
    ):
        raise InvalidRequest(
            "token arrays are not served as 'prompt'; send the text",
            param="prompt",
            code="unsupported_parameter",
        )
    try:
        request = CompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    extra = request.model_extra or {}
    for name, why in _REFUSED.items():
        if extra.get(name) is not None and extra[name] != _DEFAULTS.get(name):
            raise InvalidRequest(
                f"'{name}' is not supported: {why}", param=name, code="unsupported_parameter"
            )
    best_of = extra.get("best_of")
    if best_of is not None and best_of != 1:
        raise InvalidRequest(
            "'best_of' above 1 is not served; perfics plans sampling itself",
            param="best_of",
            code="unsupported_parameter",
        )
    return request


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def _choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


class CompletionExchange:
    """A legacy completion: ``text_completion`` objects, whole or as chunks."""

    raw = True

    def __init__(self, request: CompletionRequest) -> None:
        self.request = request
        self.chat = request.to_chat()

    async def body(self, decision: Decision, outcome: Outcome) -> bytes:
        trace = decision.declarations.trace
        return orjson.dumps(
            {
                "id": completion_id(),
                "object": "text_completion",
                "created": int(time.time()),
                "model": outcome.model,
                "choices": [
                    _choice(i, choice.text, choice.finish_reason)
                    for i, choice in enumerate(outcome.choices)
                ],
                "usage": outcome.usage.to_openai(),
                "system_fingerprint": system_fingerprint(),
                "perfics": perfics_object(decision, outcome, trace=trace),
            }
        )

    def frames(self, decision: Decision, model: str) -> EventFrames:
        return _CompletionChunks(decision, self.chat, model)


async def parse_completions(raw: bytes, admission: Admission) -> CompletionExchange:
    return CompletionExchange(parse_completion_request(raw))


class _CompletionChunks(EventFrames):
    def __init__(self, decision: Decision, chat: ChatCompletionRequest, model: str) -> None:
        super().__init__()
        self.decision = decision
        self.chat = chat
        self.model = model
        self.id = completion_id()
        self.created = int(time.time())
        self.finished: dict[int, str] = {}

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "system_fingerprint": system_fingerprint(),
            **extra,
        }
        return data(body)

    async def frames(self, item: Event) -> list[bytes]:
        if isinstance(item, RoundStarted):
            return [comment(f"perfics round {item.round}/{item.of}")]
        if isinstance(item, Sampled):
            return [comment(f"perfics sampling {item.made}/{item.of}")]
        if isinstance(item, AnswerDelta):
            return [self.chunk([_choice(item.choice, item.text, None)])]
        if isinstance(item, Finished):
            self.finished[item.choice] = item.result.finish_reason
            result = item.result
            if result.streamed or not result.text:
                return []
            return [
                self.chunk([_choice(item.choice, piece, None)])
                for piece in replay_pieces(result.text)
            ]
        if isinstance(item, Done):
            return self.done(item.outcome)
        return []

    def done(self, outcome: Outcome) -> list[bytes]:
        perfics = perfics_object(self.decision, outcome, trace=self.decision.declarations.trace)
        last = max(self.finished)
        frames = [
            self.chunk(
                [_choice(index, "", reason)], **({"perfics": perfics} if index == last else {})
            )
            for index, reason in sorted(self.finished.items())
        ]
        if self.chat.include_usage:
            frames.append(self.chunk([], usage=outcome.usage.to_openai()))
        return frames
