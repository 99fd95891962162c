"""Everything the client receives from a chat completion, in one place: the body
(``body``), the ``x-perfics-*`` headers (``headers``), the SSE stream (``stream``) and the
error envelope (``error_json``).

    headers = decision_headers(decision, request_id, model=outcome.model, fallbacks=...)
    headers |= outcome_headers(outcome)
    body = completion_body(decision, outcome, logprobs=chat.logprobs, trace=...)

Errors: every error the service raises is a ``proxy.errors.PerficsError``; ``error_json``
renders its envelope (the HTTP routes of ``proxy.app`` and the chat endpoint both use it).
"""

from __future__ import annotations

import orjson

from proxy.errors import PerficsError
from proxy.response.body import completion_body, perfics_object
from proxy.response.headers import decision_headers, outcome_headers
from proxy.response.stream import CompletionFrames

__all__ = [
    "CompletionFrames",
    "completion_body",
    "decision_headers",
    "error_json",
    "outcome_headers",
    "perfics_object",
]


def error_json(exc: PerficsError) -> bytes:
    """The JSON of ``exc``'s envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps(exc.to_envelope())
