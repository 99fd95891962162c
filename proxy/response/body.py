"""Response bodies in OpenAI's shape: the completion, its choices, stream chunks, and the
``perfics`` object that repeats the outcome.

USD values in the ``perfics`` object are the header strings (``routing.cost.format_usd``) read
back as numbers, so body and headers agree to the last digit.
"""

from __future__ import annotations

import functools
import importlib.metadata
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.results import Outcome, TokenLogprob
from routing.cost import format_usd
from routing.decision import Decision


def completion_body(
    decision: Decision, outcome: Outcome, *, logprobs: bool, trace: bool
) -> dict[str, Any]:
    """The ``chat.completion`` object of a non-streaming response."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": outcome.model,
        "choices": [
            choice_body(
                i,
                c.text,
                c.finish_reason,
                c.tool_calls,
                logprobs=c.logprobs if logprobs else None,
            )
            for i, c in enumerate(outcome.choices)
        ],
        "usage": outcome.usage.to_openai(),
        "system_fingerprint": system_fingerprint(),
        "perfics": perfics_object(decision, outcome, trace=trace),
    }


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


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
    index: int,
    text: str,
    finish_reason: str,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    *,
    logprobs: Sequence[TokenLogprob] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {
        "index": index,
        "message": message,
        "finish_reason": finish_reason,
        "logprobs": logprobs_body(logprobs),
    }


def logprobs_body(logprobs: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    """OpenAI's choice ``logprobs``: None unless asked for."""
    if logprobs is None:
        return None
    return {"content": list(logprobs), "refusal": None}


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


def perfics_object(decision: Decision, outcome: Outcome, *, trace: bool) -> dict[str, Any]:
    """The body's ``perfics`` object (its ``trace`` only when asked for). ``technique`` and
    ``samples_planned`` are the answering model's plan, as the decision headers say."""
    answering = decision.candidate(outcome.model)
    body: dict[str, Any] = {
        "model": outcome.model,
        "task": decision.declarations.task,
        "task_source": decision.declarations.task_source,
        "score": round(answering.score or 0.0, 6),
        "rounds": outcome.rounds,
        "rounds_planned": outcome.rounds_planned,
        "technique": answering.technique,
        "samples_planned": answering.samples,
        "samples": outcome.choices[0].samples,
        "selected_by": outcome.choices[0].selected_by,
        "stop_reason": outcome.stop_reason,
        "cost_usd": float(format_usd(outcome.cost_usd)),
        "estimated_cost_usd": float(format_usd(answering.estimated_cost_usd)),
        "reference_cost_usd": (
            float(format_usd(outcome.reference_cost_usd))
            if outcome.reference_cost_usd is not None
            else None
        ),
        "fallbacks": list(outcome.fallbacks),
    }
    if trace:
        body["trace"] = [
            {"choice": index, **round_.to_json()}
            for index, choice in enumerate(outcome.choices)
            for round_ in choice.trace
        ]
    return body
