"""Bounds on what a client's JSON Schema may ask of a constrained-decoding grammar.

A ``response_format`` JSON schema (and a tool's ``parameters``) becomes a grammar the model is
held to token by token: on the embedded backend a llama.cpp GBNF grammar, upstream vLLM's
xgrammar or outlines. Grammar size grows with repetition counts, enum sizes, properties and
nesting; unbounded, one request can take the process's memory (``minItems: 1000000000``) or
hold the model for seconds (a 20,000-value enum). ``check_schema`` refuses such a schema with
400 before any model work, naming the field.

Limits, chosen from grammar-build timings on the build machine (docs/architecture.md): a
grammar within them builds in milliseconds.

============================  =======  ==================================================
what                          limit    why
============================  =======  ==================================================
serialised size               32 KiB   the grammar is at least as large
nesting (subschemas)          10       OpenAI's own Structured Outputs limit is 10
properties in one object      64       llama.cpp's optional-property rules grow
                                       quadratically (200 optional properties: 1.4 s)
properties in all             512
enum / const values in all    256      5,000 values took 3 s to build
repetition counts             256      ``minItems``, ``maxItems``, ``minLength``,
                                       ``maxLength``, ``minProperties``, ``maxProperties``,
                                       ``minContains``, ``maxContains``; llama.cpp expands
                                       them into copies of the rule
``pattern`` length            256      and no ``{n}`` quantifier above 256 inside it
``$ref``                      local    ``#/$defs/NAME`` or ``#/definitions/NAME`` that
                                       exists; no cycles, no remote or root references
``type``                      known    one of JSON Schema's seven types
============================  =======  ==================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from proxy.errors import InvalidRequest

MAX_BYTES = 32 * 1024
MAX_NESTING = 10
MAX_OBJECT_PROPERTIES = 64
MAX_PROPERTIES = 512
MAX_ENUM_VALUES = 256
MAX_REPEAT = 256
MAX_PATTERN = 256

_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_COUNTS = (
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
)
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = (
    "items",
    "additionalProperties",
    "additionalItems",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_LOCAL_REF = re.compile(r"#/(\$defs|definitions)/([^/]+)")
_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def check_schema(schema: Any, param: str) -> None:
    """Raise ``InvalidRequest`` (naming ``param``) when ``schema`` is not a JSON Schema this
    proxy will turn into a grammar; see the module docstring for the limits."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise _invalid(param, "must be a JSON Schema object")
    size = len(orjson.dumps(schema))
    if size > MAX_BYTES:
        raise _invalid(param, f"is {size} bytes; the limit is {MAX_BYTES}")
    walk = _Walk(schema, param)
    walk.visit(schema, param, 1)
    walk.check_refs()


class _Walk:
    def __init__(self, root: Mapping[str, Any], param: str) -> None:
        self.root = root
        self.param = param
        self.properties = 0
        self.enum_values = 0
        self.refs: list[tuple[str, str]] = []  # (where, target)

    def visit(self, node: Any, where: str, depth: int) -> None:
        if isinstance(node, bool):
            return
        if not isinstance(node, Mapping):
            raise _invalid(where, "must be a JSON Schema object or boolean")
        if depth > MAX_NESTING:
            raise _invalid(where, f"nests subschemas more than {MAX_NESTING} levels deep")
        self._check_keywords(node, where)
        for key in _SUBSCHEMA_MAPS:
            children = node.get(key)
            if children is None:
                continue
            if not isinstance(children, Mapping):
                raise _invalid(f"{where}.{key}", "must be an object of schemas")
            if key == "properties":
                if len(children) > MAX_OBJECT_PROPERTIES:
                    raise _invalid(
                        f"{where}.{key}",
                        f"has {len(children)} properties; the limit is {MAX_OBJECT_PROPERTIES}",
                    )
                self.properties += len(children)
                if self.properties > MAX_PROPERTIES:
                    raise _invalid(self.param, f"has more than {MAX_PROPERTIES} properties")
            nested = depth if key in ("$defs", "definitions") else depth + 1
            for name, child in children.items():
                self.visit(child, f"{where}.{key}.{str(name)[:40]}", nested)
        for key in _SUBSCHEMA_LISTS:
            children = node.get(key)
            if children is None:
                continue
            if not isinstance(children, list):
                raise _invalid(f"{where}.{key}", "must be an array of schemas")
            for index, child in enumerate(children):
                self.visit(child, f"{where}.{key}[{index}]", depth + 1)
        for key in _SUBSCHEMAS:
            if key in node:
                child = node[key]
                if key == "items" and isinstance(child, list):  # draft-07 tuple form
                    for index, item in enumerate(child):
                        self.visit(item, f"{where}.items[{index}]", depth + 1)
                else:
                    self.visit(child, f"{where}.{key}", depth + 1)

    def _check_keywords(self, node: Mapping[str, Any], where: str) -> None:
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
        for value in kinds:
            if value not in _TYPES:
                shown = str(value)[:40]
                raise _invalid(f"{where}.type", f"'{shown}' is not a JSON Schema type")
        for key in _COUNTS:
            count = node.get(key)
            if count is None:
                continue
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise _invalid(f"{where}.{key}", "must be a non-negative integer")
            if count > MAX_REPEAT:
                raise _invalid(f"{where}.{key}", f"is {count}; the limit is {MAX_REPEAT}")
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list) or not values:
                raise _invalid(f"{where}.enum", "must be a non-empty array")
            self.enum_values += len(values)
        if "const" in node:
            self.enum_values += 1
        if self.enum_values > MAX_ENUM_VALUES:
            raise _invalid(self.param, f"has more than {MAX_ENUM_VALUES} enum and const values")
        pattern = node.get("pattern")
        if pattern is not None:
            self._check_pattern(pattern, f"{where}.pattern")
        ref = node.get("$ref")
        if ref is not None:
            if not isinstance(ref, str) or not _LOCAL_REF.fullmatch(ref):
                shown = str(ref)[:60]
                raise _invalid(
                    f"{where}.$ref",
                    f"'{shown}' is not supported: only '#/$defs/NAME' or '#/definitions/NAME'",
                )
            self.refs.append((where, ref))

    def _check_pattern(self, pattern: Any, where: str) -> None:
        if not isinstance(pattern, str):
            raise _invalid(where, "must be a string")
        if len(pattern) > MAX_PATTERN:
            raise _invalid(where, f"is {len(pattern)} characters; the limit is {MAX_PATTERN}")
        for low, high in _QUANTIFIER.findall(pattern):
            if int(low) > MAX_REPEAT or (high and int(high) > MAX_REPEAT):
                raise _invalid(where, f"repeats more than {MAX_REPEAT} times")

    def check_refs(self) -> None:
        """Every reference names a definition that exists, and no chain of references returns
        to where it started (a recursive schema has no finite grammar here)."""
        targets: dict[str, Any] = {}
        for _, ref in self.refs:
            match = _LOCAL_REF.fullmatch(ref)
            assert match is not None
            section = self.root.get(match.group(1))
            if not isinstance(section, Mapping) or match.group(2) not in section:
                where = next(w for w, r in self.refs if r == ref)
                raise _invalid(f"{where}.$ref", f"'{ref[:60]}' names no definition")
            targets[ref] = section[match.group(2)]
        edges = {ref: sorted(set(_refs_in(target))) for ref, target in targets.items()}
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def cycle_from(ref: str) -> bool:
            state[ref] = 1
            for following in edges.get(ref, ()):
                if state.get(following) == 1 or (
                    state.get(following) is None and cycle_from(following)
                ):
                    return True
            state[ref] = 2
            return False

        for ref in edges:
            if state.get(ref) is None and cycle_from(ref):
                raise _invalid(self.param, f"is recursive through '{ref[:60]}'")


def _refs_in(node: Any) -> list[str]:
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.append(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _invalid(where: str, problem: str) -> InvalidRequest:
    param = where.split(".", 1)[0] if "." in where else where
    return InvalidRequest(f"'{where}' {problem}", param=param, code="invalid_schema")
