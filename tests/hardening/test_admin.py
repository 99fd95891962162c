"""The admin rule holds against forged forwarding headers and cross-site browser requests, and
``/readyz`` shows its details to admin callers only."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends.conftest import Stub, label
from tests.keys.conftest import make_key
from tests.keys.test_budget_concurrency import wait_until

from .conftest import STUB_POLICY, Served, write_policy


def outward_address() -> str | None:
    """This machine's address on its first non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))  # no packet is sent: UDP connect only routes
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def exposed(upstream: Stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Bound to every interface, with uvicorn told to trust every forwarder (the set-up that
    let a remote ``X-Forwarded-For: 127.0.0.1`` pass as loopback)."""
    policy = write_policy(
        tmp_path_factory.mktemp("admin"),
        STUB_POLICY,
        api_base=upstream.url(label("ok")),
        max_body_bytes=65536,
    )
    server = Served(policy, host="0.0.0.0", env={"FORWARDED_ALLOW_IPS": "*"})
    yield server
    server.stop()


def test_a_forwarded_loopback_address_is_not_loopback(exposed: Served) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    remote = f"http://{address}:{exposed.port}"
    for forged in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}):
        response = httpx.post(f"{remote}/admin/reload", headers=forged)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["type"] == "permission_error"
    ready = httpx.get(f"{remote}/readyz", headers={"X-Forwarded-For": "127.0.0.1"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_cross_site_browser_requests_are_refused(exposed: Served) -> None:
    local = f"http://127.0.0.1:{exposed.port}"
    for headers in (
        {"Origin": "http://attacker.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ):
        response = httpx.post(f"{local}/admin/reload", headers=headers)
        assert response.status_code == 403, (headers, response.text)
    same = httpx.post(f"{local}/admin/reload", headers={"Origin": local})
    assert same.status_code == 200, same.text
    assert httpx.post(f"{local}/admin/reload").status_code == 200  # curl, scripts


def test_readyz_details_are_for_admin_callers(exposed: Served) -> None:
    local = httpx.get(f"http://127.0.0.1:{exposed.port}/readyz").json()
    assert local["status"] == "ready"
    assert local["models_ready"] == ["up"]
    assert "policy" in local
    assert local["last_reload_error"] is None
    assert httpx.get(f"http://127.0.0.1:{exposed.port}/healthz").json() == {"status": "ok"}


def test_once_keys_exist_admin_routes_need_the_admin_key(upstream: Stub, tmp_path: Path) -> None:
    """Issue 21: without an admin key any local process could reload the policy and read the
    keys and spend of a proxy that has users. From the first key on, every ``/admin`` route
    needs the admin key; loopback reads only while no key exists."""
    database = f"sqlite:///{tmp_path}/admin.db"  # its own: a key would close other servers
    policy = write_policy(
        tmp_path, STUB_POLICY, api_base=upstream.url(label("ok")), max_body_bytes=65536
    )
    admin = [("POST", "/admin/reload"), ("GET", "/admin/keys"), ("GET", "/admin/spend")]
    server = Served(policy, env={"PERFICS_DATABASE_URL": database})
    try:
        for method, path in admin:
            assert httpx.request(method, f"{server.base_url}{path}").status_code == 200, path
        make_key(database, "--name", "team")
        # Whether keys exist is cached for a second.
        wait_until(lambda: httpx.post(f"{server.base_url}/admin/reload").status_code != 200)
        for method, path in [*admin, ("GET", "/admin/keys/team")]:
            refused = httpx.request(method, f"{server.base_url}{path}")
            assert refused.status_code == 403, (path, refused.text)
            error = refused.json()["error"]
            assert error["type"] == "permission_error"
            assert "PERFICS_ADMIN_KEY" in error["message"]
        assert httpx.get(f"{server.base_url}/metrics").status_code == 200  # its own rule
    finally:
        server.stop()
    keyed = Served(
        policy, env={"PERFICS_DATABASE_URL": database, "PERFICS_ADMIN_KEY": "admin-secret-2"}
    )
    try:
        bearer = {"authorization": "Bearer admin-secret-2"}
        assert httpx.post(f"{keyed.base_url}/admin/reload").status_code == 401
        assert httpx.post(f"{keyed.base_url}/admin/reload", headers=bearer).status_code == 200
        listed = httpx.get(f"{keyed.base_url}/admin/keys", headers=bearer).json()["data"]
        assert [key["name"] for key in listed] == ["team"]
    finally:
        keyed.stop()
