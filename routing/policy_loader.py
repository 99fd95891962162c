"""Loading a policy file, reporting every problem as ``FILE:LINE: field.path: message``.

The YAML is composed first (PyYAML nodes keep their line), so each data path maps to a line:
a mapping entry to its key's line, a list item to the item's first line. Problems found by the
schema (``routing.policy``) and by the cross-section checks (``routing.policy_checks``) are
reported together; a path with no line of its own (a missing field) takes its parent's line.
Duplicate mapping keys, which PyYAML would silently collapse, are problems too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from routing.errors import PolicyError, PolicyProblem
from routing.policy import NESTED_ERRORS, SKIP_CROSS_CHECKS, Policy
from routing.policy_checks import Loc, cross_check
from routing.policy_index import index_of

SYNTAX = "(syntax)"
ROOT = "(root)"

_TYPE_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required field is missing",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "finite_number": "must be a finite number",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}
_BOUND_KEYS = {
    "greater_than": "gt",
    "greater_than_equal": "ge",
    "less_than": "lt",
    "less_than_equal": "le",
}
_SHOW_INPUT = (frozenset(_TYPE_MESSAGES) | frozenset(_BOUNDS) | {"literal_error"}) - {
    "extra_forbidden",
    "missing",
    "too_short",
}


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy at ``path``; raises ``PolicyError`` listing every problem
    (file names in problems are ``path`` as given)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(
            (PolicyProblem(str(path), 1, ROOT, f"cannot read the file: {exc}"),)
        ) from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, filename: str) -> Policy:
    """Validate the policy in ``text``, naming ``filename`` in problems; raises ``PolicyError``.
    The returned policy has its planning index built."""
    loader = yaml.SafeLoader(text)
    lines: dict[Loc, int] = {}
    problems: list[PolicyProblem] = []
    try:
        node = loader.get_single_node()
        if node is not None:
            lines[()] = node.start_mark.line + 1
            _map_lines(node, (), lines, problems, filename, frozenset())
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        raise PolicyError((_syntax_problem(exc, filename),)) from exc
    except yaml.YAMLError as exc:
        raise PolicyError((PolicyProblem(filename, 1, SYNTAX, str(exc)),)) from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        problems.append(PolicyProblem(filename, 1, ROOT, "the policy must be a YAML mapping"))
        raise PolicyError(tuple(problems))

    def add(loc: Loc, message: str) -> None:
        problems.append(PolicyProblem(filename, _line(lines, loc), _path(loc), message))

    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data, context={SKIP_CROSS_CHECKS: True})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            for loc, message in _explain(error):
                add(loc, message)
    for loc, message in cross_check(data):
        add(loc, message)
    if problems or policy is None:
        unique = sorted(set(problems), key=lambda p: (p.line, p.path, p.message))
        raise PolicyError(tuple(unique))
    _ = index_of(policy)  # built at load, not on the first request
    return policy


def _syntax_problem(exc: yaml.MarkedYAMLError, filename: str) -> PolicyProblem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    message = ", ".join(part for part in (exc.context, exc.problem) if part)
    return PolicyProblem(filename, line, SYNTAX, message or "invalid YAML")


def _map_lines(
    node: yaml.Node,
    path: Loc,
    lines: dict[Loc, int],
    problems: list[PolicyProblem],
    filename: str,
    ancestors: frozenset[int],
) -> None:
    if id(node) in ancestors:  # a recursive alias
        return
    inside = ancestors | {id(node)}
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in first_seen:
                problems.append(
                    PolicyProblem(
                        filename,
                        line,
                        _path((*path, key)),
                        f"duplicate key (first at line {first_seen[key]})",
                    )
                )
                continue
            first_seen[key] = line
            lines[(*path, key)] = line
            _map_lines(value_node, (*path, key), lines, problems, filename, inside)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            lines[(*path, position)] = item.start_mark.line + 1
            _map_lines(item, (*path, position), lines, problems, filename, inside)


def _explain(error: Any) -> list[tuple[Loc, str]]:
    """``(loc, message)`` pairs for one pydantic error, expanding the policy's custom errors."""
    loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == NESTED_ERRORS:
        return [
            ((*loc, *inner), _message(inner_kind, message, value, inner_ctx))
            for inner, inner_kind, message, value, inner_ctx in ctx["errors"]
        ]
    if "[key]" in error["loc"]:
        key_problem = _message(kind, error["msg"], error.get("input"), ctx)
        return [(loc, f"invalid key: {key_problem}")]
    return [(loc, _message(kind, error["msg"], error.get("input"), ctx))]


def _message(kind: str, message: str, value: object, ctx: dict[str, Any] | None) -> str:
    ctx = ctx or {}
    if kind in _BOUNDS:
        bound = ctx.get(_BOUND_KEYS[kind])
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        text = f"must be {_BOUNDS[kind]} {bound}"
    elif kind == "literal_error":
        text = f"must be {ctx.get('expected')}"
    else:
        text = _TYPE_MESSAGES.get(kind, message.removeprefix("Value error, "))
    if kind in _SHOW_INPUT and (value is None or isinstance(value, str | int | float | bool)):
        text = f"{text}, got {value!r}"
    return text


def _line(lines: dict[Loc, int], loc: Loc) -> int:
    for end in range(len(loc), -1, -1):
        found = lines.get(loc[:end])
        if found is not None:
            return found
    return 1


def _path(loc: Loc) -> str:
    return ".".join(str(part) for part in loc) if loc else ROOT
