"""uvicorn's HTTP protocol with the two limits it lacks: a deadline for request headers, and a
cap on open connections.

uvicorn closes idle keep-alive connections, but a connection that sends part of a request
line or of its headers, and then nothing, stays open for good: thousands of them exhaust the
process's file descriptors (and with them the proxy's own upstream connections). Here:

- a request's headers must arrive whole within ``header_timeout_s`` of its first byte (or of
  the connection opening); otherwise the connection is closed;
- once ``max_connections`` connections are open, a new one is closed at once, before it can
  hold a descriptor for long; uvicorn's own ``limit_concurrency`` answers 503 to requests
  beyond the same figure on connections already open.

The request body's deadline (``server.body_timeout_s``) is the chat endpoint's, which answers
408 in the error envelope. Malformed HTTP (a bare CR or LF in a header, both Transfer-Encoding
and Content-Length) never reaches the app: uvicorn answers it with a plain-text 400 and closes
the connection, before there is a request to wrap in OpenAI's envelope.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def limited_protocol(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """An ``HttpToolsProtocol`` subclass holding connections to the two limits."""

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _expire(self) -> None:
            self._header_deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return LimitedHttpToolsProtocol


def protocol_options(header_timeout_s: float, max_connections: int) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments that apply the limits."""
    return {
        "http": limited_protocol(header_timeout_s, max_connections),
        # uvicorn refuses a request once the open connections reach this figure, counting
        # the request's own: one more lets each of ``max_connections`` carry a request.
        "limit_concurrency": max_connections + 1,
    }
