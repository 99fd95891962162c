"""The operator's routes: ``GET /metrics`` (Prometheus) and the dashboard (``/dashboard``,
``/dashboard/plan``, ``/dashboard/plan.json``, ``/dashboard/live``, ``/dashboard/static/*``).

Access follows the admin rule (``proxy.app_admin``: the admin key, else a loopback peer; never a
cross-site browser request). The key may come as ``Authorization: Bearer KEY`` or, so that a
browser can open the page, as HTTP Basic with the key as password: a refused dashboard
request answers 401 with ``WWW-Authenticate: Basic``. ``/metrics`` also accepts the metrics key
(``PERFICS_METRICS_KEY``), which opens nothing else.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from proxy.accounts import Accounts
from proxy.app_auth import authorize_operator
from proxy.errors import InvalidRequest, NotFound
from proxy.http_edge import error_response
from proxy.keys import key_view
from proxy.ops.dashboard import KeySpend, static_file
from proxy.ops.meter import Ops
from proxy.ops.metrics import CONTENT_TYPE
from proxy.ops.policy_view import PlanView, plan_view
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.store.base import StoreUnavailable
from routing.explain import plan_to_json


class ServiceView(Protocol):
    """What the operator's pages read of the running service (``proxy.app.ServiceState``):
    its settings, the policy serving now (``current`` raises before one is loaded), the store
    and the last reload's error."""

    settings: Settings
    runtime: Runtime | None
    accounts: Accounts | None
    reload_error: str | None

    def current(self) -> Runtime: ...


_HTML = "text/html; charset=utf-8"
_NO_STORE = {"cache-control": "no-store"}
# The page loads only what perfics serves, and no other site may frame it.
_PAGE_HEADERS = {
    **_NO_STORE,
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
}


def add_ops_routes(app: FastAPI, state: ServiceView, ops: Ops) -> None:
    """Mount the routes on ``app``, for those the operator's rule lets in
    (``proxy.app_auth.authorize_operator``)."""

    def allowed(request: Request, extra_key: str | None = None) -> None:
        authorize_operator(request, state.current().admin_key, extra_key)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        allowed(request, state.settings.metrics_key)
        if ops.metrics is None:
            return error_response(NotFound("metrics are off (PERFICS_METRICS=off)"))
        ops.refresh(state.runtime)
        await _key_gauges(state, ops)
        body = await asyncio.to_thread(ops.metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE)

    @app.get("/dashboard")
    async def dashboard(request: Request) -> Response:
        allowed(request)
        spend = await _key_spend(state)
        return await asyncio.to_thread(_page, state, ops, PlanView({}), spend)

    @app.get("/dashboard/plan")
    async def dashboard_plan(request: Request) -> Response:
        allowed(request)
        view = plan_view(state.current().policy, request.query_params)
        spend = await _key_spend(state)
        return await asyncio.to_thread(_page, state, ops, view, spend)

    @app.get("/dashboard/plan.json")
    async def dashboard_plan_json(request: Request) -> Response:
        """The form's plan as ``perfics route --json`` prints it (400 when there is none)."""
        allowed(request)
        view = plan_view(state.current().policy, request.query_params)
        if view.decision is None:
            return error_response(InvalidRequest(view.error or "no plan", code="no_plan"))
        body = plan_to_json(view.decision.plan, view.decision.declarations)
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/dashboard/live")
    async def dashboard_live(request: Request) -> Response:
        allowed(request)
        ops.refresh(state.runtime)
        spend = await _key_spend(state)
        html = await asyncio.to_thread(ops.dashboard.live, ops.metrics, spend)
        return Response(html, media_type=_HTML, headers=_NO_STORE)

    @app.get("/dashboard/static/{name}")
    async def dashboard_static(name: str, request: Request) -> Response:
        allowed(request)
        found = static_file(name)
        if found is None:
            return error_response(NotFound(f"no such file: {name}"))
        content, media_type = found
        return Response(content, media_type=media_type, headers={"cache-control": "max-age=300"})


async def _key_gauges(state: ServiceView, ops: Ops) -> None:
    """The key gauges as the store has them now (left as they were if it cannot be read)."""
    if state.accounts is None or ops.metrics is None:
        return
    now = time.time()
    try:
        usage = await state.accounts.store.keys(now)
    except StoreUnavailable:
        return
    ops.metrics.keys(
        [(u.key.name, u.period, u.spent_usd, u.key.budget_usd) for u in usage if u.key.usable(now)]
    )


async def _key_spend(state: ServiceView) -> list[KeySpend] | None:
    """Every key's spend from the store; None when it cannot be read."""
    if state.accounts is None:
        return None
    store = state.accounts.store
    now = time.time()
    try:
        usage = await store.keys(now)
        since = now - LEDGER_WINDOW_S
        ledger = {line.group: line for line in await store.spend("key", since)}
    except StoreUnavailable:
        return None
    lines = []
    for entry in usage:
        view = key_view(entry, now)
        totals = ledger.get(entry.key.name)
        lines.append(
            KeySpend(
                name=entry.key.name,
                status=view["status"],
                period=entry.period,
                spent_usd=entry.spent_usd,
                remaining_usd=entry.remaining_usd,
                requests=totals.requests if totals else 0,
                cost_usd=totals.cost_usd if totals else 0.0,
                reference_cost_usd=totals.reference_cost_usd if totals else None,
            )
        )
    return lines


LEDGER_WINDOW_S = 30 * 86400
"""The dashboard's ledger totals cover the last 30 days (one indexed range per refresh)."""


def _page(state: ServiceView, ops: Ops, plan: PlanView, spend: list[KeySpend] | None) -> Response:
    """The whole page (rendered in a worker thread: it plans every task a dozen times and
    reads every metric)."""
    runtime = state.current()
    ops.refresh(runtime)
    html = ops.dashboard.page(
        runtime.policy,
        runtime.source,
        runtime.ready_models(),
        ops.metrics,
        state.reload_error,
        plan,
        spend,
    )
    return Response(html, media_type=_HTML, headers=_PAGE_HEADERS)
