"""Server-sent events as OpenAI streams them: ``data: {json}`` frames, comment lines for
keep-alive, an ``error`` event, and the closing ``data: [DONE]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def data(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def comment(text: str) -> bytes:
    """A comment line: ignored by SSE clients, keeps proxies and idle timers from closing."""
    return f": {text}\n\n".encode()


def error(envelope: Mapping[str, Any]) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(envelope) + b"\n\n"
