"""Errors raised by routing decisions and policy loading.

    RoutingError                 message, param, code
    ├── PolicyError              the policy file is invalid; ``problems`` lists every problem
    ├── UnknownModel             ``model`` is not auto, an alias or a catalog id (model_not_found)
    ├── InvalidDeclaration       a declared task, budget, round cap or ``perfics`` key is invalid
    ├── BudgetExceeded           plans exist but none fits the budget (budget_exceeded)
    ├── KeyLimit                 the client's key may not use this model, task or round count
    ├── QuotaExhausted           the key's budget cannot pay for the request (insufficient_quota)
    ├── CapabilityMissing        no model can serve what the request uses (unsupported_capability)
    ├── ContextLengthExceeded    the prompt fits no model's context (context_length_exceeded)
    ├── ModelsUnavailable        only readiness is missing (model_unavailable, 503)
    └── NoEligiblePlan           no model can serve the request at all (no_eligible_model)

``param`` names the offending request field (OpenAI's error ``param``); ``code`` is the
machine-readable OpenAI error ``code``. The proxy maps these to HTTP once, at its boundary.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One problem in a policy file. ``line`` is 1-based; ``path`` is the dotted field path
    (``models.0.quality.coding``), ``(syntax)`` for YAML syntax errors, ``(root)`` for the
    document as a whole."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class RoutingError(Exception):
    """Base of every routing error."""

    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code


class PolicyError(RoutingError):
    """An invalid policy. ``str()`` is every problem on its own line,
    ``FILE:LINE: field.path: message``."""

    default_code = "invalid_policy"

    def __init__(self, problems: tuple[PolicyProblem, ...]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems), param="policy")
        self.problems = problems


SHOWN_CHARS = 64


def shown(value: object) -> str:
    """A client's value as an error message may quote it: at most ``SHOWN_CHARS`` characters,
    so a megabyte-long model name is not echoed back (or into a log) whole."""
    text = str(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


class UnknownModel(RoutingError):
    """The request's ``model`` is neither ``auto``, an alias, nor a catalog model id."""

    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{shown(model)}' does not exist; use 'auto', an alias or a catalog "
            "model id (GET /v1/models lists them)",
            param="model",
        )
        self.model = shown(model)


class InvalidDeclaration(RoutingError):
    """A declared value is invalid. ``param`` names the field: ``task``, ``budget_usd``,
    ``max_rounds``, ``trace``, ``perfics`` or ``perfics.KEY`` for an unknown key."""

    default_code = "invalid_value"

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message, param=param)


class BudgetExceeded(RoutingError):
    """Candidates exist but none fits the budget; ``cheapest_cost_usd`` is the cheapest one's
    estimated cost, which the message names."""

    default_code = "budget_exceeded"

    def __init__(self, message: str, *, cheapest_cost_usd: float) -> None:
        super().__init__(message, param="budget_usd")
        self.cheapest_cost_usd = cheapest_cost_usd


class KeyLimit(RoutingError):
    """The request asks for what its key does not allow: a model, a task or more rounds;
    ``param`` names the field (``model``, ``task``, ``max_rounds``)."""

    default_code = "key_limit"

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message, param=param)


class QuotaExhausted(RoutingError):
    """What the key has left this period cannot pay for the request, or is below the budget
    the request declared."""

    default_code = "insufficient_quota"


class CapabilityMissing(RoutingError):
    """The request uses something (tools, a JSON schema, logprobs, images) that no candidate
    model can serve; ``param`` names the request field."""

    default_code = "unsupported_capability"

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message, param=param)


class ContextLengthExceeded(RoutingError):
    """The prompt (with the answer it needs) fits no candidate model's context window: OpenAI's
    ``context_length_exceeded``, which client libraries look for to raise their own overflow
    error. ``param`` is ``messages``, or ``tools`` when only the forced tools overflow it."""

    default_code = "context_length_exceeded"

    def __init__(self, message: str, *, param: str = "messages") -> None:
        super().__init__(message, param=param)


class ModelsUnavailable(RoutingError):
    """Models could serve the request, but none of their backends is ready now (503
    ``model_unavailable``: a retry may succeed)."""

    default_code = "model_unavailable"


class NoEligiblePlan(RoutingError):
    """No candidate at all, for reasons other than the budget; the message gives each model's
    reason."""

    default_code = "no_eligible_model"
