"""structlog set-up: one JSON line per event on stderr, with the request id bound per request
through contextvars.

No request content reaches the log unless the policy's ``refinement.log_content`` is true for
the request being served (``CONTENT``, set per request by the chat endpoint):

- with it off (the default), a logged exception keeps its type and its traceback's frames
  (file, line, function) but not its message, which may quote what the client sent (a JSON
  schema, a prompt); with it on, the full traceback;
- with it on, ``request.done`` also carries the conversation and the answers
  (``content_fields``); with it off, nothing calls a logger with prompt or answer text.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import traceback
import uuid
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import orjson
import structlog

CONTENT: contextvars.ContextVar[bool] = contextvars.ContextVar("perfics_log_content", default=False)
"""Whether the request being served may log its content (``refinement.log_content``)."""

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "perfics_request_id", default=None
)
"""The id of the request being served: in every log line, the response and upstream calls."""

_SAFE_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


def request_id(supplied: str | None) -> str:
    """The client's ``X-Request-Id`` when it is safe to echo (at most 128 characters of
    ``A-Z a-z 0-9 . _ : @ + = / -``), else a new ``req_<32 hex>``."""
    if supplied is not None and _SAFE_ID.fullmatch(supplied):
        return supplied
    return f"req_{uuid.uuid4().hex}"


def upstream_request_id() -> str | None:
    """The id to send upstream as ``X-Request-Id``: the request's id when it is a UUID, the hex
    of perfics's own ``req_<32 hex>``, else none. Servers built on starlette-context, such as
    llama-cpp-python's, answer 400 to any other value, so an arbitrary client id is kept to
    perfics's own logs and response."""
    rid = REQUEST_ID.get()
    if rid is None:
        return None
    candidate = rid.removeprefix("req_")
    try:
        uuid.UUID(candidate)
    except ValueError:
        return None
    return candidate


def bind_request(rid: str, *, log_content: bool) -> None:
    """Bind the request id (logs, upstream calls) and the content switch for this request's
    task."""
    REQUEST_ID.set(rid)
    CONTENT.set(log_content)
    structlog.contextvars.bind_contextvars(request_id=rid)


def configure_logging(level: str = "info") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            format_exception,
            # orjson renders bytes; about 30 us a line cheaper than json (benchmarks/README.md).
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )


def format_exception(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``exc_info`` rendered as ``exception``, without the messages of
    the exceptions in the chain unless content logging is on for this request."""
    exc_info = event.pop("exc_info", None)
    if not exc_info:
        return event
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if exc_info[0] is None:
        return event
    if CONTENT.get():
        event["exception"] = "".join(traceback.format_exception(*exc_info))
    else:
        event["exception"] = _redacted(exc_info[1])
    return event


def _redacted(exc: BaseException | None) -> str:
    """The traceback of ``exc`` and its causes: frames and exception types, no messages."""
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.insert(0, _frames(exc.__traceback__) + f"{type(exc).__qualname__}: <redacted>\n")
        exc = exc.__cause__ or exc.__context__
    return "\nDuring handling of the above exception, another exception occurred:\n\n".join(parts)


def _frames(tb: TracebackType | None) -> str:
    lines = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(tb):
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
    return "".join(lines)


def content_fields(messages: Any, answers: list[str]) -> dict[str, Any]:
    """The conversation and answers for ``request.done``, only when content logging is on."""
    return {"messages": messages, "answers": answers} if CONTENT.get() else {}
