"""``POST /v1/embeddings`` as a plain ASGI endpoint, beside the chat endpoint and held to the
same edge (key, content type, body size and time, OpenAI's envelope): the models whose
``capabilities`` list ``embeddings`` (``routing.embeddings``), cheapest first and the next on
an upstream failure, admitted by the caller's key and entered in the spend ledger like every
request (task ``embeddings``). Without such a model the answer is a 400 naming ``model``.

Served: ``model``, ``input`` (a string or a list of strings), ``encoding_format`` (``float`` or
``base64``), ``dimensions`` (where the model can shorten its vectors), ``user``. Token arrays
as input are refused by name.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from proxy import logs
from proxy.accounts import Accounts, Ticket
from proxy.backends.base import Embedder, Embeddings
from proxy.errors import (
    BackendError,
    InternalError,
    InvalidRequest,
    PerficsError,
    QuotaExceeded,
    from_routing_error,
)
from proxy.http_edge import JSON_TYPE, check_content_type, read_body, request_headers, respond
from proxy.protocol import decode_body, invalid_from
from proxy.response import error_json
from proxy.runtime import Runtime
from proxy.store.records import KeyRecord, LedgerRow
from routing.cost import cost_usd, format_usd
from routing.embeddings import EmbeddingPlan, plan_embedding
from routing.errors import BudgetExceeded, RoutingError
from routing.estimate import CHARS_PER_TOKEN
from routing.policy_index import index_of

log = structlog.get_logger(__name__)

EMBEDDINGS_PATH = "/v1/embeddings"
MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    """The body of ``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @property
    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


def parse_embedding_request(raw: bytes) -> EmbeddingRequest:
    data = decode_body(raw)
    given = data.get("input")
    if isinstance(given, list) and any(not isinstance(item, str) for item in given):
        raise InvalidRequest(
            "token arrays are not served as 'input'; send the text",
            param="input",
            code="unsupported_parameter",
        )
    try:
        request = EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    if any(not text for text in request.inputs):
        raise InvalidRequest("'input' may not contain empty strings", param="input")
    if len(request.inputs) > MAX_INPUTS:
        raise InvalidRequest(f"'input' may hold at most {MAX_INPUTS} texts", param="input")
    return request


class EmbeddingsEndpoint:
    """The ASGI app of ``POST /v1/embeddings``."""

    def __init__(self, current: Callable[[], Runtime], accounts: Callable[[], Accounts]) -> None:
        self._current = current
        self._accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        started = time.time()
        request_id = logs.request_id(headers.get("x-request-id"))
        key: KeyRecord | None = None
        ticket: Ticket | None = None
        status, model, usage_tokens, cost = 500, None, 0, 0.0
        accounts: Accounts | None = None
        parsed = False
        try:
            runtime = self._current()
            accounts = self._accounts()
            logs.bind_request(request_id, log_content=runtime.policy.refinement.log_content)
            key = await accounts.caller(headers, runtime.api_key)
            limits = runtime.policy.server
            check_content_type(headers)
            raw = await read_body(receive, headers, limits.max_body_bytes, limits.body_timeout_s)
            request = parse_embedding_request(raw)
            parsed = True
            plan = _plan(runtime, request, accounts, key)
            if key is not None:
                ticket = await accounts.draw(key, plan.estimated_cost_usd, plan.input_tokens)
            model, result = await _embed(runtime, plan, request)
            usage_tokens = result.usage.prompt_tokens
            cost = cost_usd(index_of(runtime.policy).prices[model], usage_tokens, 0)
            body = _body(request, model, result)
            out = {
                "x-request-id": request_id,
                "x-perfics-model": model,
                "x-perfics-estimated-cost-usd": format_usd(plan.estimated_cost_usd),
                "x-perfics-cost-usd": format_usd(cost),
                "x-perfics-prompt-tokens": str(usage_tokens),
                "x-perfics-latency-ms": str(round((time.time() - started) * 1000)),
                **(ticket.headers if ticket is not None else {}),
            }
            status = 200
            await respond(send, 200, orjson.dumps(body), JSON_TYPE, out)
        except PerficsError as exc:
            status = exc.status_code
            if ticket is not None:
                exc.headers.update(ticket.headers)
            exc.headers.setdefault("x-request-id", request_id)
            await respond(send, status, error_json(exc), JSON_TYPE, exc.headers)
        except Exception as exc:
            log.error("request.failed", exc_info=exc)
            await respond(send, 500, error_json(InternalError("internal server error")), JSON_TYPE)
        finally:
            # One ledger row per request that passed authentication and parsing, as chats;
            # a failed call cost nothing (an embedding is one call, paid only when it answers).
            if accounts is not None and parsed:
                accounts.record(
                    _row(request_id, started, key, ticket, model, usage_tokens, cost, status)
                )


def _plan(
    runtime: Runtime, request: EmbeddingRequest, accounts: Accounts, key: KeyRecord | None
) -> EmbeddingPlan:
    scope = accounts.scope(key) if key is not None else None
    try:
        return plan_embedding(
            runtime.policy,
            model=request.model,
            input_tokens=[-(-len(text) // CHARS_PER_TOKEN) for text in request.inputs],
            ready=runtime.ready_models(),
            allowed=scope.models if scope is not None else None,
            budget_usd=scope.left_usd if scope is not None else None,
        )
    except BudgetExceeded as exc:
        if scope is None:
            raise from_routing_error(exc) from exc
        # What the key has left is what bound, as a chat request's key budget does.
        raise QuotaExceeded(
            f"the key '{scope.name}' has {format_usd(max(scope.left_usd or 0.0, 0.0))} USD left "
            f"this period; the cheapest embedding costs {format_usd(exc.cheapest_cost_usd)} USD",
            param="budget_usd",
        ) from exc
    except RoutingError as exc:
        raise from_routing_error(exc) from exc


async def _embed(
    runtime: Runtime, plan: EmbeddingPlan, request: EmbeddingRequest
) -> tuple[str, Embeddings]:
    """The first model of the plan that answers; a retryable failure moves to the next."""
    attempts = plan.attempts
    for position, (model, _) in enumerate(attempts):
        backend = runtime.backends[model]
        if not isinstance(backend, Embedder):
            raise InvalidRequest(f"the model {model} cannot embed", param="model")
        try:
            return model, await backend.embed(request.inputs, request.dimensions)
        except BackendError as exc:
            if not exc.retryable or position + 1 == len(attempts):
                raise
            log.warning("route.fallback", model=model, next=attempts[position + 1][0])
    raise AssertionError("unreachable: the last attempt's failure is raised")


def _body(request: EmbeddingRequest, model: str, result: Embeddings) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, request)}
        for index, vector in enumerate(result.vectors)
    ]
    tokens = result.usage.prompt_tokens
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encoded(vector: tuple[float, ...], request: EmbeddingRequest) -> list[float] | str:
    if request.encoding_format == "float":
        return list(vector)
    # OpenAI's base64: the vector as little-endian float32s.
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _row(
    request_id: str,
    started: float,
    key: KeyRecord | None,
    ticket: Ticket | None,
    model: str | None,
    tokens: int,
    cost: float,
    status: int,
) -> LedgerRow:
    return LedgerRow(
        time=started,
        request_id=request_id,
        key_id=key.id if key is not None else None,
        model=model,
        task="embeddings",
        rounds=None,
        stop_reason=None,
        prompt_tokens=tokens,
        completion_tokens=0,
        cost_usd=cost,
        reference_cost_usd=None,
        latency_ms=round((time.time() - started) * 1000),
        status=status,
        fallbacks=0,
        stream=False,
        lease_id=ticket.lease_id if ticket else None,
        reserved_usd=ticket.amount_usd if ticket else 0.0,
        period=ticket.period if ticket else None,
        window=ticket.window if ticket else None,
        tokens_estimated=ticket.tokens_estimated if ticket else 0,
    )
