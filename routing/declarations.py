"""What the client declared: task, budget, round cap, sample cap and trace, resolved by
precedence.

Each value comes from the first source that gives it: the ``X-Perfics-*`` header, then the
body's ``perfics`` object, then the alias named by ``model``; the task then falls back to the
keyword classifier on the last user message, then to the policy's ``default_task``. Budget,
round cap and sample cap have no fallback (None: no budget, no cap beyond the task's). A sample
cap of 0 or 1 plans no samples to select from.

Values are validated whatever their source's rank: an invalid header raises even when the body
holds a valid value, because the client sent it and would not learn why it was ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from routing.classify import classify_task
from routing.errors import InvalidDeclaration, UnknownModel, shown
from routing.policy import Policy
from routing.policy_index import index_of

TaskSource = Literal["header", "body", "alias", "classifier", "default"]
ValueSource = Literal["header", "body", "alias", "key"]

AUTO = "auto"
TASK_HEADER = "x-perfics-task"
BUDGET_HEADER = "x-perfics-budget-usd"
ROUNDS_HEADER = "x-perfics-max-rounds"
SAMPLES_HEADER = "x-perfics-max-samples"
TRACE_HEADER = "x-perfics-trace"
BODY_KEYS = ("task", "budget_usd", "max_rounds", "max_samples", "trace")
TRUE_HEADER_VALUES = frozenset({"1", "true", "yes"})

_DECIMAL = re.compile(r"^\s*(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$")
_INTEGER = re.compile(r"^\s*\d+\s*$")


@dataclass(frozen=True, slots=True)
class Declarations:
    """The resolved declarations of one request. ``pinned_model`` is set when ``model`` is a
    catalog id, ``alias`` when it is an alias; both are None for ``auto``."""

    task: str
    task_source: TaskSource
    budget_usd: float | None
    budget_source: ValueSource | None
    max_rounds: int | None
    trace: bool
    pinned_model: str | None
    alias: str | None
    max_samples: int | None = None


def resolve_declarations(
    policy: Policy,
    *,
    model: str,
    headers: Mapping[str, str],
    body: Mapping[str, object] | None,
    last_user_text: str,
) -> Declarations:
    """Resolve the request's declarations. ``headers`` keys are lowercase; ``body`` is the
    request's ``perfics`` object. Raises ``UnknownModel`` for a ``model`` that is not ``auto``,
    an alias or a catalog id, and ``InvalidDeclaration`` (``param`` naming the field) for an
    undeclared task, a budget that is not a non-negative number, a round or sample cap that is
    not a non-negative integer, a non-boolean trace or an unknown ``perfics`` key."""
    alias_id: str | None = None
    pinned: str | None = None
    if model in policy.aliases:
        alias_id = model
    elif model in index_of(policy).models:
        pinned = model
    elif model != AUTO:
        raise UnknownModel(model)
    alias = policy.aliases[alias_id] if alias_id is not None else None
    declared = _body(body)

    task, task_source = _task(policy, headers, declared, alias.task if alias else None)
    if task is None:
        classified = classify_task(policy, last_user_text)
        task, task_source = (
            (classified, "classifier")
            if classified is not None
            else (policy.default_task, "default")
        )

    budget, budget_source = _first(
        _header_number(headers.get(BUDGET_HEADER)),
        _body_number(declared.get("budget_usd"), "budget_usd"),
        alias.budget_usd if alias else None,
    )
    rounds, _ = _first(
        _header_integer(headers.get(ROUNDS_HEADER), ROUNDS_HEADER, "max_rounds"),
        _body_integer(declared.get("max_rounds"), "max_rounds"),
        alias.max_rounds if alias else None,
    )
    samples, _ = _first(
        _header_integer(headers.get(SAMPLES_HEADER), SAMPLES_HEADER, "max_samples"),
        _body_integer(declared.get("max_samples"), "max_samples"),
        alias.max_samples if alias else None,
    )
    return Declarations(
        task=task,
        task_source=task_source,
        budget_usd=float(budget) if budget is not None else None,
        budget_source=budget_source,
        max_rounds=int(rounds) if rounds is not None else None,
        trace=_trace(headers.get(TRACE_HEADER), declared.get("trace")),
        pinned_model=pinned,
        alias=alias_id,
        max_samples=int(samples) if samples is not None else None,
    )


def _body(body: Mapping[str, object] | None) -> Mapping[str, object]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise InvalidDeclaration("perfics must be an object", param="perfics")
    for key in body:
        if key not in BODY_KEYS:
            raise InvalidDeclaration(
                f"unknown key perfics.{shown(key)} (allowed: {', '.join(BODY_KEYS)})",
                param=f"perfics.{shown(key)}",
            )
    return body


def _task(
    policy: Policy,
    headers: Mapping[str, str],
    body: Mapping[str, object],
    alias_task: str | None,
) -> tuple[str | None, TaskSource]:
    header = headers.get(TASK_HEADER, "").strip() or None
    from_body = body.get("task")
    if from_body is not None and not isinstance(from_body, str):
        raise InvalidDeclaration("perfics.task must be a string", param="task")
    for task in (header, from_body):
        if task is not None and task not in policy.tasks:
            raise InvalidDeclaration(
                f"unknown task '{shown(task)}'; the policy declares: {', '.join(policy.tasks)}",
                param="task",
            )
    if header is not None:
        return header, "header"
    if from_body is not None:
        return from_body, "body"
    if alias_task is not None:
        return alias_task, "alias"
    return None, "default"


def _first(
    header: float | None, body: float | None, alias: float | None
) -> tuple[float | None, ValueSource | None]:
    if header is not None:
        return header, "header"
    if body is not None:
        return body, "body"
    if alias is not None:
        return alias, "alias"
    return None, None


def _header_number(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    if not _DECIMAL.match(value):
        raise InvalidDeclaration(
            f"{BUDGET_HEADER} must be a non-negative number of USD, got '{shown(value)}'",
            param="budget_usd",
        )
    number = float(value)
    if not math.isfinite(number):
        raise InvalidDeclaration(f"{BUDGET_HEADER} must be finite", param="budget_usd")
    return number


def _body_number(value: object, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidDeclaration(
            f"perfics.{field} must be a non-negative number of USD", param=field
        )
    if not math.isfinite(value) or value < 0:
        raise InvalidDeclaration(
            f"perfics.{field} must be a finite non-negative number", param=field
        )
    return float(value)


def _header_integer(value: str | None, header: str, field: str) -> int | None:
    if value is None or not value.strip():
        return None
    if not _INTEGER.match(value):
        raise InvalidDeclaration(
            f"{header} must be a non-negative integer, got '{shown(value)}'", param=field
        )
    return int(value)


def _body_integer(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidDeclaration(f"perfics.{field} must be a non-negative integer", param=field)
    return value


def _trace(header: str | None, body: object) -> bool:
    if body is not None and not isinstance(body, bool):
        raise InvalidDeclaration("perfics.trace must be true or false", param="trace")
    if header is not None and header.strip().lower() in TRUE_HEADER_VALUES:
        return True
    return bool(body)
