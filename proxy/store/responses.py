"""Stored responses (``POST /v1/responses`` with ``store: true``), over the store's
transaction protocol (``proxy.store.base``): kept in the database, never in a process, so any
proxy sharing the store serves ``GET``/``DELETE /v1/responses/{id}`` and continues a
conversation from its ``previous_response_id``.

A response belongs to the key that made it (``key_id``; None for the single
``PERFICS_API_KEY`` or an open proxy): another key finds nothing under its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from proxy.store.base import Store


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response object as returned (``body``) and the conversation it answered: every input
    item, those of the responses before it included (``input_items``)."""

    id: str
    key_id: str | None
    created_at: float
    body: dict[str, Any]
    input_items: list[dict[str, Any]]

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """What a response continuing this one starts from: its input, then its output."""
        return [*self.input_items, *self.body.get("output", [])]


async def save_response(store: Store, response: StoredResponse) -> None:
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO responses (id, key_id, created_at, body, input_items) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                response.id,
                response.key_id,
                response.created_at,
                orjson.dumps(response.body).decode(),
                orjson.dumps(response.input_items).decode(),
            ),
        )


async def load_response(
    store: Store, response_id: str, key_id: str | None
) -> StoredResponse | None:
    """The response ``response_id`` made with ``key_id``; None when there is none."""
    async with store.transaction() as tx:
        rows = await tx.fetch(
            "SELECT created_at, body, input_items FROM responses "
            "WHERE id = ? AND key_id IS NOT DISTINCT FROM ?",
            (response_id, key_id),
        )
    if not rows:
        return None
    created_at, body, items = rows[0]
    return StoredResponse(
        response_id, key_id, float(created_at), orjson.loads(body), orjson.loads(items)
    )


async def delete_response(store: Store, response_id: str, key_id: str | None) -> bool:
    """Delete the response; False when there was none for ``key_id``."""
    async with store.transaction() as tx:
        deleted = await tx.execute(
            "DELETE FROM responses WHERE id = ? AND key_id IS NOT DISTINCT FROM ?",
            (response_id, key_id),
        )
    return deleted > 0


async def prune_responses(store: Store, before: float) -> int:
    """Delete responses made before ``before`` (``server.responses_retention_days``)."""
    async with store.transaction() as tx:
        return await tx.execute("DELETE FROM responses WHERE created_at < ?", (before,))
