"""``POST /v1/responses`` on the chat endpoint's path (``proxy.app_chat``): the request read
into the chat request the pipeline serves, the conversation it continues read from the store,
and the answer rendered as a ``response`` (stored when ``store`` is true, before the client
learns it is done, so that its next ``previous_response_id`` finds it on any proxy).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import structlog

from proxy.accounts import Accounts
from proxy.admission import Admission
from proxy.errors import InvalidRequest, KeyStoreUnavailable, NotFound
from proxy.protocol import ChatCompletionRequest
from proxy.response.stream import EventFrames
from proxy.responses.render import ResponseFrames, finished_object, response_id
from proxy.responses.request import Item, ResponsesRequest, parse_responses_request
from proxy.results import Outcome
from proxy.store.base import StoreUnavailable
from proxy.store.responses import StoredResponse, load_response, save_response
from routing.decision import Decision

log = structlog.get_logger(__name__)

RESPONSES_PATH = "/v1/responses"


class ResponsesExchange:
    raw = False

    def __init__(
        self,
        request: ResponsesRequest,
        chat: ChatCompletionRequest,
        items: list[Item],
        accounts: Accounts,
        key_id: str | None,
    ) -> None:
        self.request = request
        self.chat = chat
        self.items = items
        self.accounts = accounts
        self.key_id = key_id
        self.id = response_id()
        self.created_at = int(time.time())

    async def body(self, decision: Decision, outcome: Outcome) -> bytes:
        body = finished_object(
            self.request, decision, outcome, id=self.id, created_at=self.created_at
        )
        await self.save(body)
        return orjson.dumps(body)

    def frames(self, decision: Decision, model: str) -> EventFrames:
        frames = ResponseFrames(self.request, decision, model, id=self.id, save=self.save)
        frames.created_at = self.created_at
        return frames

    async def save(self, body: dict[str, Any]) -> None:
        if not self.request.store:
            return
        stored = StoredResponse(self.id, self.key_id, time.time(), body, self.items)
        try:
            await save_response(self.accounts.store, stored)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc


async def parse_responses(raw: bytes, admission: Admission) -> ResponsesExchange:
    """The exchange for a ``POST /v1/responses`` body: 404 when ``previous_response_id`` names
    no response of this caller's. With the policy's ``server.store_responses`` false nothing
    is stored, and continuing a stored response is a 400."""
    store_responses = admission.runtime.policy.server.store_responses
    accounts = admission.accounts
    request = parse_responses_request(raw)
    key_id = admission.caller.id if admission.caller is not None else None
    previous: list[Item] = []
    if not store_responses:
        if request.previous_response_id is not None:
            raise InvalidRequest(
                "this proxy stores no responses (server.store_responses is false): send the "
                "whole conversation as input instead of previous_response_id",
                param="previous_response_id",
                code="unsupported_parameter",
            )
        request = request.model_copy(update={"store": False})
    if request.previous_response_id is not None:
        stored = await stored_response(accounts, request.previous_response_id, key_id)
        if stored is None:
            raise response_not_found(request.previous_response_id, "previous_response_id")
        previous = stored.conversation
    items = [*previous, *request.input_items()]
    return ResponsesExchange(request, request.to_chat(items), items, accounts, key_id)


async def stored_response(accounts: Accounts, id: str, key_id: str | None) -> StoredResponse | None:
    try:
        return await load_response(accounts.store, id, key_id)
    except StoreUnavailable as exc:
        raise unavailable(exc) from exc


def response_not_found(id: str, param: str | None = None) -> NotFound:
    return NotFound(
        f"Response with id '{id[:80]}' not found.", param=param, code="response_not_found"
    )


def unavailable(exc: StoreUnavailable) -> KeyStoreUnavailable:
    log.error("store.unavailable", error=str(exc))
    return KeyStoreUnavailable(
        "the response store is unavailable; retry shortly", headers={"retry-after": "5"}
    )
