"""The stored responses of the Responses API: ``GET /v1/responses/{id}``,
``GET /v1/responses/{id}/input_items`` and ``DELETE /v1/responses/{id}``, for the key that
made them (``POST /v1/responses`` is served on the chat endpoint's path,
``proxy.responses.exchange``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from proxy.accounts import Accounts
from proxy.errors import InvalidRequest
from proxy.http_edge import json_response
from proxy.responses.exchange import response_not_found, stored_response, unavailable
from proxy.responses.render import input_item
from proxy.runtime import Runtime
from proxy.store.base import StoreUnavailable
from proxy.store.responses import StoredResponse, delete_response


def add_responses_routes(
    app: FastAPI, current: Callable[[], Runtime], accounts: Callable[[], Accounts]
) -> None:
    async def owned(request: Request, response_id: str) -> tuple[str | None, StoredResponse]:
        key = await accounts().caller(request.headers, current().api_key)
        key_id = key.id if key is not None else None
        stored = await stored_response(accounts(), response_id, key_id)
        if stored is None:
            raise response_not_found(response_id)
        return key_id, stored

    @app.get("/v1/responses/{response_id}")
    async def get_response(response_id: str, request: Request) -> Response:
        _, stored = await owned(request, response_id)
        return json_response(stored.body)

    @app.get("/v1/responses/{response_id}/input_items")
    async def input_items(response_id: str, request: Request) -> Response:
        _, stored = await owned(request, response_id)
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("'order' must be asc or desc", param="order")
        items = [
            input_item(item, f"item_{response_id}_{index}")
            for index, item in enumerate(stored.input_items)
        ]
        if order == "desc":
            items.reverse()
        return json_response(
            {
                "object": "list",
                "data": items,
                "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None,
                "has_more": False,
            }
        )

    @app.delete("/v1/responses/{response_id}")
    async def remove_response(response_id: str, request: Request) -> Response:
        key_id, _ = await owned(request, response_id)
        try:
            await delete_response(accounts().store, response_id, key_id)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        return json_response({"id": response_id, "object": "response", "deleted": True})
