"""The key routes under ``/admin`` (``/admin/keys``, ``/admin/spend``), for those the admin
rule lets in (``proxy.app_auth``: reading needs ``authorize_admin``, changing keys
``authorize_key_change``).

    GET    /admin/keys                  every key, with spend and what is left (no secrets)
    POST   /admin/keys                  {"name", "budget_usd", "period", "rpm", "tpm", "models",
                                         "tasks", "max_rounds", "max_samples", "expires"}
                                         -> the key and its "secret", shown once
    GET    /admin/keys/{id or name}
    PATCH  /admin/keys/{id or name}     the same fields; null sets one back to unlimited
    POST   /admin/keys/{id or name}/rotate   a new secret; the old one stops working
    POST   /admin/keys/{id or name}/revoke
    GET    /admin/spend?by=key|task|model|day&since=YYYY-MM-DD
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from proxy.accounts import Accounts
from proxy.app_auth import authorize_admin, authorize_key_change
from proxy.errors import (
    InvalidRequest,
    KeyNotFound,
    KeyStoreUnavailable,
)
from proxy.http_edge import json_response
from proxy.keys import (
    InvalidKeyInput,
    KeyLimits,
    create_key,
    key_view,
    parse_expiry,
    revoke_key,
    rotate_key,
    update_key,
)
from proxy.store.base import KeyConflict, StoreUnavailable, UnknownKey
from proxy.store.records import Period

_SPEND_BY = ("key", "task", "model", "day")
T = TypeVar("T")


class KeyFields(BaseModel):
    """The body of ``POST`` / ``PATCH /admin/keys``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = None
    budget_usd: float | None = None
    period: Period | None = None
    rpm: int | None = None
    tpm: int | None = None
    models: list[str] | None = None
    tasks: list[str] | None = None
    max_rounds: int | None = None
    max_samples: int | None = None
    expires: str | None = None

    def limits(self) -> KeyLimits:
        clear = frozenset(
            "expires_at" if name == "expires" else name
            for name in self.model_fields_set
            if getattr(self, name) is None and name not in ("name", "period")
        )
        try:
            expires = parse_expiry(self.expires) if self.expires is not None else None
        except InvalidKeyInput as exc:
            raise InvalidRequest(str(exc), param="expires") from exc
        return KeyLimits(
            budget_usd=self.budget_usd,
            period=self.period,
            rpm=self.rpm,
            tpm=self.tpm,
            models=tuple(self.models) if self.models is not None else None,
            tasks=tuple(self.tasks) if self.tasks is not None else None,
            max_rounds=self.max_rounds,
            max_samples=self.max_samples,
            expires_at=expires,
            clear=clear,
        )


def add_admin_routes(
    app: FastAPI, admin_key: Callable[[], str | None], accounts: Callable[[], Accounts]
) -> None:
    """The key and spend routes on ``app``."""

    @app.get("/admin/keys")
    async def list_keys(request: Request) -> Response:
        await authorize_admin(request, admin_key(), accounts())
        now = time.time()
        usage = await _store(accounts().store.keys(now))
        return json_response({"object": "list", "data": [key_view(u, now) for u in usage]})

    @app.get("/admin/keys/{ref}")
    async def get_key(ref: str, request: Request) -> Response:
        await authorize_admin(request, admin_key(), accounts())
        return json_response(await _view(accounts(), ref))

    @app.post("/admin/keys")
    async def create(request: Request) -> Response:
        await authorize_key_change(request, admin_key(), accounts())
        fields = await _fields(request)
        if fields.name is None:
            raise InvalidRequest("a key needs a name", param="name")
        try:
            key, secret = await _store(create_key(accounts().store, fields.name, fields.limits()))
        except InvalidKeyInput as exc:
            raise InvalidRequest(str(exc), param=_param(exc)) from exc
        except KeyConflict as exc:
            raise InvalidRequest(str(exc), param="name") from exc
        accounts().forget_keys()
        return json_response({**(await _view(accounts(), key.id)), "secret": secret}, 201)

    @app.patch("/admin/keys/{ref}")
    async def update(ref: str, request: Request) -> Response:
        await authorize_key_change(request, admin_key(), accounts())
        fields = await _fields(request)
        try:
            key = await _store(update_key(accounts().store, ref, fields.name, fields.limits()))
        except InvalidKeyInput as exc:
            raise InvalidRequest(str(exc), param=_param(exc)) from exc
        except KeyConflict as exc:
            raise _missing_or_conflict(exc) from exc
        accounts().forget_keys()
        return json_response(await _view(accounts(), key.id))

    @app.post("/admin/keys/{ref}/rotate")
    async def rotate(ref: str, request: Request) -> Response:
        await authorize_key_change(request, admin_key(), accounts())
        try:
            key, secret = await _store(rotate_key(accounts().store, ref))
        except KeyConflict as exc:
            raise _missing_or_conflict(exc) from exc
        accounts().forget_keys()
        return json_response({**(await _view(accounts(), key.id)), "secret": secret})

    @app.post("/admin/keys/{ref}/revoke")
    async def revoke(ref: str, request: Request) -> Response:
        await authorize_key_change(request, admin_key(), accounts())
        try:
            key = await _store(revoke_key(accounts().store, ref))
        except KeyConflict as exc:
            raise _missing_or_conflict(exc) from exc
        accounts().forget_keys()
        return json_response(await _view(accounts(), key.id))

    @app.get("/admin/spend")
    async def spend(request: Request) -> Response:
        await authorize_admin(request, admin_key(), accounts())
        by = request.query_params.get("by", "key")
        if by not in _SPEND_BY:
            raise InvalidRequest(f"by must be one of {', '.join(_SPEND_BY)}", param="by")
        since_text = request.query_params.get("since")
        try:
            since = parse_expiry(since_text) - 86399 if since_text else None
        except InvalidKeyInput as exc:
            raise InvalidRequest("since must be a date (YYYY-MM-DD)", param="since") from exc
        lines = await _store(accounts().store.spend(by, since))
        data = [
            {
                "group": line.group,
                "requests": line.requests,
                "prompt_tokens": line.prompt_tokens,
                "completion_tokens": line.completion_tokens,
                "cost_usd": round(line.cost_usd, 12),
                "reference_cost_usd": (
                    None if line.reference_cost_usd is None else round(line.reference_cost_usd, 12)
                ),
            }
            for line in lines
        ]
        return json_response({"object": "list", "by": by, "data": data})


async def _store(call: Awaitable[T]) -> T:
    try:
        return await call
    except StoreUnavailable as exc:
        raise KeyStoreUnavailable(str(exc)) from exc


async def _view(accounts: Accounts, ref: str) -> dict[str, Any]:
    now = time.time()
    try:
        key = await _store(accounts.store.key(ref))
    except KeyConflict as exc:
        raise _missing_or_conflict(exc) from exc
    usage = await _store(accounts.store.keys(now))
    return key_view(next(u for u in usage if u.key.id == key.id), now)


async def _fields(request: Request) -> KeyFields:
    try:
        return KeyFields.model_validate(orjson.loads(await request.body()))
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("the body must be a JSON object") from exc
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise InvalidRequest(f"{field}: {error['msg']}", param=field) from exc


def _param(exc: Exception) -> str | None:
    head = str(exc).split(" ", 1)[0].rstrip(":")
    return head if head.isidentifier() else None


def _missing_or_conflict(exc: KeyConflict) -> Exception:
    if isinstance(exc, UnknownKey):
        return KeyNotFound(str(exc), param="key")
    return InvalidRequest(str(exc), param="name")
