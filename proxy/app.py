"""The ASGI application: ``create_app(settings)`` builds everything; nothing exists at import.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{id}``,
``GET /healthz`` (process up), ``GET /readyz`` (a backend ready; to admin callers also the
policy file, the ready models and the last reload error), ``POST /admin/reload``, and the
operator's ``/metrics`` and ``/dashboard`` (``proxy.app_ops``, under the same admin rule).
Every error leaves as OpenAI's envelope.

The admin rule and the key routes: ``proxy.app_admin``.

``/v1/chat/completions`` is dispatched before FastAPI (``PerficsApp``): ``POST`` to its ASGI
endpoint (``proxy.app_chat.ChatEndpoint``), any other method answered 405 with ``Allow: POST``;
everything else goes through FastAPI, which also runs the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.accounts import Accounts
from proxy.app_admin import add_admin_routes
from proxy.app_auth import authorize_admin, is_admin
from proxy.app_chat import CHAT_PATH, ChatEndpoint
from proxy.app_embeddings import EMBEDDINGS_PATH, EmbeddingsEndpoint
from proxy.app_ops import add_ops_routes
from proxy.app_responses import add_responses_routes
from proxy.backends.base import Backend
from proxy.completions import COMPLETIONS_PATH, parse_completions
from proxy.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    PerficsError,
)
from proxy.http_edge import error_response, json_response
from proxy.ops.meter import Ops
from proxy.ops.tracing import Tracing
from proxy.responses.exchange import RESPONSES_PATH, parse_responses
from proxy.runtime import Runtime, build_runtime, close_runtime, retire
from proxy.settings import Settings
from proxy.store.base import StoreUnavailable
from proxy.store.connect import database_url, open_store, upgrade
from routing.errors import PolicyError

log = structlog.get_logger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    injected: Mapping[str, Backend] | None = None
    runtime: Runtime | None = None
    accounts: Accounts | None = None
    reload_error: str | None = None
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    retiring: set[asyncio.Task[None]] = field(default_factory=set)
    draining: set[Runtime] = field(default_factory=set)
    ops: Ops | None = None

    async def _retire(self, old: Runtime) -> None:
        def live() -> list[Runtime]:
            others = [r for r in self.draining if r is not old]
            return [*others, self.runtime] if self.runtime is not None else others

        try:
            await retire(old, live)
        finally:
            self.draining.discard(old)

    def current(self) -> Runtime:
        if self.runtime is None:
            raise InternalError("the policy is not loaded yet")
        return self.runtime

    def ledger(self) -> Accounts:
        if self.accounts is None:
            raise InternalError("the key store is not open yet")
        return self.accounts

    async def open_store(self) -> None:
        """Open the key and ledger store named by the settings or the policy, its schema
        brought up to date; ``StoreUnavailable`` when it cannot be reached."""
        server = self.current().policy.server
        url = database_url(self.settings.database_url, server.database)
        await asyncio.to_thread(upgrade, url)
        self.accounts = Accounts(
            await open_store(url),
            lease_ttl_s=server.lease_ttl_s,
            ledger_interval_s=server.ledger_interval_s,
            key_cache_s=server.key_cache_s,
            lease_idle_s=server.lease_idle_s,
            retention_days=server.ledger_retention_days,
            responses_retention_days=server.responses_retention_days,
        )
        self.accounts.start()

    async def reload(self) -> Runtime:
        """Re-read the policy file. A bad file raises ``PolicyError`` and changes nothing."""
        async with self.reload_lock:
            old = self.runtime
            try:
                new = await build_runtime(self.settings, previous=old, backends=self.injected)
            except PolicyError as exc:
                self.reload_error = str(exc)
                if self.ops is not None:
                    self.ops.policy_failed(self.reload_error)
                log.warning("policy.reload_failed", problems=len(exc.problems))
                raise
            self.runtime, self.reload_error = new, None
            if self.ops is not None:
                self.ops.policy_loaded(new)
            log.info("policy.loaded", source=new.source, models=len(new.backends))
            if old is not None:
                self.draining.add(old)
                task = asyncio.create_task(self._retire(old))
                self.retiring.add(task)
                task.add_done_callback(self.retiring.discard)
            return new


class PerficsApp:
    """The service as one ASGI app. ``POST /v1/chat/completions``, ``/v1/responses``,
    ``/v1/completions`` and ``/v1/embeddings`` go to their endpoints (mounted here only);
    every other request, those paths with another method included (405 with ``Allow: POST``),
    goes to ``api``."""

    def __init__(self, api: FastAPI, endpoints: Mapping[str, ASGIApp]) -> None:
        self.api = api
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.endpoints.get(scope["path"].rstrip("/")) if scope["type"] == "http" else None
        )
        if endpoint is not None:
            if scope["method"] == "POST":
                await endpoint(scope, receive, send)
                return
            error = MethodNotAllowed(
                f"method {scope['method']} is not allowed here", headers={"allow": "POST"}
            )
            await error_response(error)(scope, receive, send)
            return
        await self.api(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    backends: Mapping[str, Backend] | None = None,
    tracing: Tracing | None = None,
) -> PerficsApp:
    """The service. ``backends`` injects ready-made backends by model id, ``tracing`` a
    tracer provider's spans (tests); otherwise tracing follows the ``OTEL_*`` variables."""
    ops = Ops.create(metrics=settings.metrics, tracing=tracing)
    state = ServiceState(settings, backends, ops=ops)
    endpoints: dict[str, ASGIApp] = {
        CHAT_PATH: ChatEndpoint(state.current, settings, state.ledger, ops),
        RESPONSES_PATH: ChatEndpoint(state.current, settings, state.ledger, ops, parse_responses),
        COMPLETIONS_PATH: ChatEndpoint(
            state.current, settings, state.ledger, ops, parse_completions
        ),
        EMBEDDINGS_PATH: EmbeddingsEndpoint(state.current, state.ledger),
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.reload()
        try:
            await state.open_store()
        except StoreUnavailable as exc:
            log.error("store.unavailable", error=str(exc))
            await close_runtime(state.current())
            raise
        _reload_on_sighup(state)
        refresher = asyncio.create_task(ops.refresh_forever(lambda: state.runtime))
        yield
        refresher.cancel()
        if state.accounts is not None:
            await state.accounts.aclose()
        if state.runtime is not None:
            await close_runtime(state.runtime)
        ops.close()

    app = FastAPI(title="perfics", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(PerficsError)
    async def perfics_error(request: Request, exc: PerficsError) -> Response:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers or {})  # 405: Allow
        if exc.status_code == 404:
            # A path nobody serves: OpenAI's own words, so clients report it the same way.
            where = f"Invalid URL ({request.method} {request.url.path})"
            return error_response(NotFound(where, headers=headers))
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(str(exc.detail), headers=headers))
        error = InvalidRequest(str(exc.detail), headers=headers)
        return error_response(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("request.failed", exc_info=exc)
        return error_response(InternalError("internal server error"))

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        await state.ledger().caller(request.headers, state.current().api_key)
        return json_response({"object": "list", "data": _model_cards(state.current())})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> Response:
        await state.ledger().caller(request.headers, state.current().api_key)
        for card in _model_cards(state.current()):
            if card["id"] == model_id:
                return json_response(card)
        raise ModelNotFound(f"the model '{model_id}' does not exist", param="model")

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        runtime = state.runtime
        ready = sorted(runtime.ready_models()) if runtime else []
        body: dict[str, Any] = {"status": "ready" if ready else "not_ready"}
        if runtime is not None and is_admin(request, runtime.admin_key):
            body |= {
                "policy": runtime.source,
                "models_ready": ready,
                "last_reload_error": state.reload_error,
            }
        return json_response(body, 200 if ready else 503)

    @app.post("/admin/reload")
    async def admin_reload(request: Request) -> Response:
        await authorize_admin(request, state.current().admin_key, state.ledger())
        try:
            runtime = await state.reload()
        except PolicyError as exc:
            return error_response(InvalidRequest(str(exc), param="policy", code="invalid_policy"))
        return json_response({"status": "reloaded", "policy": runtime.source})

    add_admin_routes(app, lambda: state.current().admin_key, state.ledger)
    add_ops_routes(app, state, ops)
    add_responses_routes(app, state.current, state.ledger)
    return PerficsApp(app, endpoints)


def _reload_on_sighup(state: ServiceState) -> None:
    """SIGHUP re-reads the policy, as daemons do; a bad file is logged and changes nothing."""

    async def reload() -> None:
        with contextlib.suppress(PolicyError):
            await state.reload()

    def on_signal() -> None:
        task = asyncio.get_running_loop().create_task(reload())
        state.retiring.add(task)
        task.add_done_callback(state.retiring.discard)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_signal)
    except (NotImplementedError, RuntimeError, ValueError):
        log.debug("policy.sighup_unavailable")


def _model_cards(runtime: Runtime) -> list[dict[str, Any]]:
    policy = runtime.policy
    cards = [
        {"id": "auto", "object": "model", "created": 0, "owned_by": "perfics"},
        *(
            {"id": alias, "object": "model", "created": 0, "owned_by": "perfics-alias"}
            for alias in policy.aliases
        ),
        *(
            {"id": spec.id, "object": "model", "created": 0, "owned_by": spec.backend}
            for spec in policy.models
        ),
    ]
    return cards
