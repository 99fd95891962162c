"""Who may use the operator's routes: one set of rules for ``/admin`` (``proxy.app_admin``),
``/metrics`` and ``/dashboard`` (``proxy.app_ops``) and ``/readyz``'s details.

- A cross-site browser request (an ``Origin`` other than the request's own host, or
  ``Sec-Fetch-Site`` other than ``same-origin`` / ``none``) is always refused, so a page the
  operator visits cannot drive these routes from their browser.
- With an admin key configured (``PERFICS_ADMIN_KEY``), the key, sent as ``Authorization:
  Bearer KEY`` or, so that a browser can open the dashboard, as the password of HTTP Basic.
- Without one, a loopback peer (the TCP peer itself; forwarded headers are never consulted).
- ``/admin`` more strictly (``authorize_admin``): once any client key exists, every ``/admin``
  route needs the admin key, loopback or not (any process on the machine is a loopback peer,
  and with keys the proxy has users who must not read each other's keys or reload its policy);
  changing keys always does (``authorize_key_change``).
- ``/metrics`` also opens to its own key (``PERFICS_METRICS_KEY``), which opens nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request

from proxy.accounts import Accounts
from proxy.errors import AuthenticationFailed, PermissionDenied

_LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}
_CHALLENGE = {"www-authenticate": 'Basic realm="perfics"'}


def is_admin(request: Request, admin_key: str | None) -> bool:
    """The operator's rule: not cross-site, and the admin key (where one is configured) or a
    loopback peer."""
    if cross_site(request):
        return False
    return presents(request, admin_key) if admin_key else loopback_peer(request)


def authorize_operator(
    request: Request, admin_key: str | None, extra_key: str | None = None
) -> None:
    """Raise unless ``is_admin``, or the request presents ``extra_key`` (the metrics key). A
    missing or wrong key is a 401 with a Basic challenge, so a browser asks for it."""
    if cross_site(request):
        raise PermissionDenied("cross-site browser requests are refused")
    if is_admin(request, admin_key) or (extra_key and presents(request, extra_key)):
        return
    if admin_key or extra_key:
        raise AuthenticationFailed("invalid or missing admin key", headers=dict(_CHALLENGE))
    raise PermissionDenied("served to loopback clients only; set PERFICS_ADMIN_KEY")


async def authorize_admin(request: Request, admin_key: str | None, accounts: Accounts) -> None:
    """Raise unless the request may use ``/admin``; without an admin key, ask ``accounts``
    whether keys exist (``KeyStoreUnavailable`` when it cannot say)."""
    if cross_site(request):
        raise PermissionDenied("/admin refuses cross-site browser requests")
    if admin_key:
        if not presents(request, admin_key):
            raise AuthenticationFailed("invalid or missing admin key")
        return
    if not loopback_peer(request):
        raise PermissionDenied("/admin is served to loopback clients only; set PERFICS_ADMIN_KEY")
    if await accounts.keys_exist():
        raise PermissionDenied(
            "keys exist, so /admin needs the admin key, loopback or not: set PERFICS_ADMIN_KEY "
            "and send it"
        )


async def authorize_key_change(request: Request, admin_key: str | None, accounts: Accounts) -> None:
    """Changing keys needs the admin key configured and sent (loopback alone never does)."""
    if not admin_key:
        raise PermissionDenied(
            "changing keys needs an admin key: set PERFICS_ADMIN_KEY (loopback alone only reads)"
        )
    await authorize_admin(request, admin_key, accounts)


def presents(request: Request, key: str) -> bool:
    """``Authorization`` carries ``key``: as a bearer token, or as HTTP Basic's password (the
    user name is not checked)."""
    supplied = request.headers.get("authorization", "")
    if supplied.startswith("Basic "):
        try:
            decoded = base64.b64decode(supplied.removeprefix("Basic ").strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded.partition(b":")[2], key.encode())
    token = supplied.removeprefix("Bearer ").strip()
    return hmac.compare_digest(token.encode(), key.encode())


def loopback_peer(request: Request) -> bool:
    """The TCP peer (ASGI ``client``) is this machine. Forwarded headers are not consulted."""
    client = request.scope.get("client")
    return client is not None and client[0] in _LOOPBACK


def cross_site(request: Request) -> bool:
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") != host
