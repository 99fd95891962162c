"""The HTTP edge every endpoint shares: as plain ASGI, request headers, the JSON content type, a
body read within its size and time limits, a whole response, and the watch that cancels the
work when the client goes; for the FastAPI routes, a JSON response and the error envelope.

A watcher task waits for the client's ``http.disconnect`` and cancels the serving task, so an
abandoned request, streaming or not, stops calling models at once (the backend frees the model
within a token or two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.errors import PayloadTooLarge, PerficsError, RequestTimeout, UnsupportedMediaType

JSON_TYPE = (b"content-type", b"application/json")
EVENT_STREAM = (b"content-type", b"text/event-stream; charset=utf-8")
# The rest of an oversized or stalled body is not read: the connection cannot be reused.
_CLOSE = {"connection": "close"}


class ClientGone(Exception):
    """The client disconnected before the answer was complete."""


class DisconnectWatch:
    """While active, a client disconnect cancels the task that entered it, and ``gone`` turns
    true. ``stop`` ends the watch (before the last message, which completes the response: the
    server then reports the request as disconnected)."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.gone = False
        self._watcher: asyncio.Task[None] | None = None
        self._serving: asyncio.Task[Any] | None = None

    def __enter__(self) -> DisconnectWatch:
        self._serving = asyncio.current_task()
        assert self._serving is not None
        self._watcher = asyncio.get_running_loop().create_task(self._watch(self._serving))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def uncancel(self) -> None:
        """Withdraw the cancellation this watch made, once it has been handled."""
        assert self._serving is not None
        self._serving.uncancel()

    async def _watch(self, serving: asyncio.Task[Any]) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        serving.cancel()


def check_content_type(headers: Mapping[str, str]) -> None:
    """JSON bodies only (``application/json``, or a ``+json`` type): a browser can send
    ``text/plain`` or a form across sites without asking, never JSON."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        shown = media[:60] or "none"
        raise UnsupportedMediaType(
            f"the body must be JSON, sent with 'Content-Type: application/json' (got {shown})"
        )


async def read_body(
    receive: Receive, headers: Mapping[str, str], limit: int, timeout_s: float
) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes
    (from ``Content-Length`` before reading, or while reading), and with 408 when it has not
    arrived whole within ``timeout_s``."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}", headers=_CLOSE)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the body exceeds the limit of {limit} bytes", headers=_CLOSE
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g} s", headers=_CLOSE
        ) from None


def request_headers(scope: Scope) -> dict[str, str]:
    """The request headers by lowercase name (ASGI servers lowercase them); a repeated header
    keeps its first value, as Starlette's ``Headers.get`` does."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in reversed(scope["headers"])
    }


def encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: tuple[bytes, bytes],
    headers: Mapping[str, str] | None = None,
) -> None:
    raw = [(b"content-length", str(len(body)).encode()), content_type]
    if headers:
        raw += encoded(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def json_response(
    body: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A Starlette response of ``body`` as JSON (the FastAPI routes')."""
    return Response(orjson.dumps(body), status_code, headers, media_type="application/json")


def error_response(exc: PerficsError) -> Response:
    """OpenAI's error envelope for ``exc``, with its status and headers."""
    return Response(
        orjson.dumps(exc.to_envelope()), exc.status_code, exc.headers, media_type="application/json"
    )
