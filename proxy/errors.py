"""The service's exception tree. Every error it raises carries its HTTP status and OpenAI error
type; one function (``proxy.response.error_json``) renders the envelope
``{"error": {"message", "type", "param", "code"}}``.

    PerficsError
    ├── InvalidRequest          400 invalid_request_error
    ├── AuthenticationFailed    401 authentication_error
    ├── PermissionDenied        403 permission_error
    ├── NotFound                404 invalid_request_error (a stored response, a path)
    │   ├── ModelNotFound       404 code model_not_found
    │   └── KeyNotFound         404 code key_not_found
    ├── MethodNotAllowed        405 invalid_request_error (with Allow)
    ├── RequestTimeout          408 invalid_request_error, code request_timeout (body too slow)
    ├── PayloadTooLarge         413 invalid_request_error, code request_too_large
    ├── UnsupportedMediaType    415 invalid_request_error, code unsupported_content_type
    ├── QueueFull               429 rate_limit_error, code queue_full (Retry-After)
    ├── RateLimited             429 rate_limit_error, code rate_limit_exceeded (Retry-After)
    ├── QuotaExceeded           429 insufficient_quota (the key's budget)
    ├── KeyStoreUnavailable     503 the key store is unreachable (budgeted keys fail closed)
    ├── BackendError            502 api_error (an upstream answered with an error)
    │   ├── UpstreamRejected    the upstream's 4xx: the client's fault, never retried elsewhere
    │   │   └── ContextLengthExceeded  400 context_length_exceeded; a larger model may take it
    │   ├── BackendUnavailable  503 service_unavailable (connection refused, no replica up)
    │   └── BackendTimeout      504 timeout
    └── InternalError           500 server_error (message is generic; details only in the log)

``BackendError.retryable`` tells the pipeline whether the next candidate model may be tried.
Routing errors (``routing.errors``) are translated once, in ``from_routing_error``.
"""

from __future__ import annotations

from proxy.results import CallRecord, Spent, Usage
from routing.errors import (
    BudgetExceeded,
    KeyLimit,
    ModelsUnavailable,
    QuotaExhausted,
    RoutingError,
    UnknownModel,
)


class PerficsError(Exception):
    """Base of every error the service answers with."""

    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def to_envelope(self) -> dict[str, dict[str, str | None]]:
        return envelope(self.message, self.error_type, self.param, self.code)


def envelope(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    """OpenAI's error object, all four keys present."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class InvalidRequest(PerficsError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(PerficsError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(PerficsError):
    status_code = 403
    error_type = "permission_error"


class NotFound(PerficsError):
    """Something the request names does not exist (a stored response, a path)."""

    status_code = 404
    error_type = "invalid_request_error"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class KeyNotFound(NotFound):
    """``/admin/keys/{ref}`` names no key."""

    default_code = "key_not_found"


class MethodNotAllowed(PerficsError):
    """A path served for other methods; ``headers`` carry ``Allow``."""

    status_code = 405
    error_type = "invalid_request_error"


class RequestTimeout(PerficsError):
    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLarge(PerficsError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaType(PerficsError):
    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_content_type"


class QueueFull(PerficsError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class RateLimited(PerficsError):
    """The key's requests or tokens per minute are used up until the window resets."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class QuotaExceeded(PerficsError):
    """The key's budget for the period cannot pay for the request (OpenAI's envelope for an
    exhausted quota)."""

    status_code = 429
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"
    left_usd: float | None = None
    retryable_within = False
    """Whether a cheaper plan within ``left_usd`` might still be admitted."""


class KeyStoreUnavailable(PerficsError):
    """The key store cannot be reached: keys it must check are refused (fail closed)."""

    status_code = 503
    error_type = "service_unavailable_error"
    default_code = "store_unavailable"


class BackendError(PerficsError):
    """An upstream failed. ``retryable`` errors let the pipeline fall back to the next model.
    ``calls`` are the request's calls on this model that did finish before it failed (set by
    the refinement and selection loops): they were paid for, whatever follows. ``request`` is
    what the whole request spent, every model it tried included, once this error ends it (set
    by the pipeline): the ledger charges that, not the request's estimate; metrics and traces
    count its calls."""

    status_code = 502
    error_type = "api_error"
    default_code = "upstream_error"
    retryable = True
    calls: tuple[CallRecord, ...] = ()
    request: Spent | None = None

    @property
    def spent(self) -> Usage:
        """The usage of ``calls``."""
        usage = Usage()
        for call in self.calls:
            usage = usage + call.usage
        return usage


class UpstreamRejected(BackendError):
    """The upstream refused the request itself (a 4xx): retrying elsewhere would not help."""

    retryable = False

    def __init__(self, message: str, *, status_code: int = 400, param: str | None = None) -> None:
        super().__init__(message, param=param, code="upstream_rejected")
        self.status_code = status_code
        self.error_type = "invalid_request_error" if status_code < 500 else "api_error"


class ContextLengthExceeded(UpstreamRejected):
    """The prompt does not fit the model's context as the model itself counts it (the planner
    only estimates): OpenAI's ``context_length_exceeded``. The next model of the plan, whose
    context may be larger, is tried."""

    retryable = True

    def __init__(self, message: str, *, param: str | None = "messages") -> None:
        super().__init__(message, status_code=400, param=param)
        self.code = "context_length_exceeded"


class BackendUnavailable(BackendError):
    status_code = 503
    error_type = "service_unavailable_error"
    default_code = "backend_unavailable"


class BackendTimeout(BackendError):
    status_code = 504
    error_type = "timeout_error"
    default_code = "backend_timeout"


class InternalError(PerficsError):
    status_code = 500
    error_type = "server_error"
    default_code = "internal_error"


def from_routing_error(exc: RoutingError) -> PerficsError:
    """Translate a routing decision error into the service's tree (the one place this happens)."""
    if isinstance(exc, UnknownModel):
        return ModelNotFound(exc.message, param=exc.param or "model", code="model_not_found")
    if isinstance(exc, QuotaExhausted):
        return QuotaExceeded(exc.message, param="budget_usd")
    if isinstance(exc, KeyLimit):
        return PermissionDenied(exc.message, param=exc.param, code="key_limit")
    if isinstance(exc, BudgetExceeded):
        return InvalidRequest(exc.message, param=exc.param, code="budget_exceeded")
    if isinstance(exc, ModelsUnavailable):
        return BackendUnavailable(
            exc.message, code="model_unavailable", headers={"retry-after": "5"}
        )
    return InvalidRequest(exc.message, param=exc.param, code=exc.code)
