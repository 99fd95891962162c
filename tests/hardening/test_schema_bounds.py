"""Client JSON Schemas are bounded before they become grammars (``proxy.schema_bounds``)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import InvalidRequest
from proxy.protocol import parse_chat_request
from proxy.schema_bounds import MAX_ENUM_VALUES, MAX_OBJECT_PROPERTIES, MAX_REPEAT, check_schema

PARAM = "response_format.json_schema.schema"


def refused(schema: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        check_schema(schema, PARAM)
    assert caught.value.param == "response_format"
    assert caught.value.code == "invalid_schema"
    return caught.value


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
         "required": ["name"]},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": MAX_REPEAT},
        {"enum": [f"v{i}" for i in range(MAX_ENUM_VALUES)]},
        {"$defs": {"p": {"type": "object", "properties": {"x": {"type": "number"}}}},
         "type": "array", "items": {"$ref": "#/$defs/p"}},
        {"type": ["string", "null"], "pattern": "^[a-z]{1,20}$"},
        True,
    ],
)  # fmt: skip
def test_ordinary_schemas_pass(schema: Any) -> None:
    check_schema(schema, PARAM)


def test_huge_repetition_counts_are_refused() -> None:
    error = refused({"type": "array", "items": {"type": "integer"}, "minItems": 1_000_000_000})
    assert "minItems" in error.message
    assert str(MAX_REPEAT) in error.message
    refused({"type": "string", "maxLength": MAX_REPEAT + 1})
    refused({"type": "string", "pattern": "^a{1,100000}$"})
    refused({"type": "array", "minItems": -1})


def test_large_enums_and_objects_are_refused() -> None:
    refused({"enum": list(range(20_000))})
    wide = {f"p{i}": {"type": "string"} for i in range(MAX_OBJECT_PROPERTIES + 1)}
    refused({"type": "object", "properties": wide})
    refused({"anyOf": [{"const": i} for i in range(MAX_ENUM_VALUES + 1)]})


def test_deep_nesting_and_size_are_refused() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        schema = {"type": "array", "items": schema}
    assert "levels deep" in refused(schema).message
    refused({"description": "x" * 40_000, "type": "string"})


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "nonsense"}, "not a JSON Schema type"),
        ({"$ref": "#"}, "only '#/$defs/NAME'"),
        ({"$ref": "https://example.com/schema.json"}, "only '#/$defs/NAME'"),
        ({"$ref": "#/$defs/missing"}, "names no definition"),
        (
            {"$defs": {"n": {"type": "object", "properties": {"c": {"$ref": "#/$defs/n"}}}},
             "$ref": "#/$defs/n"},
            "recursive",
        ),
        ({"type": "object", "properties": ["a"]}, "must be an object of schemas"),
        ("a string", "must be a JSON Schema object"),
    ],
)  # fmt: skip
def test_invalid_schemas_are_named(schema: Any, words: str) -> None:
    assert words in refused(schema).message


def test_the_wire_checks_response_format_and_tool_parameters() -> None:
    body = (
        b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], '
        b'"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": '
        b'{"type": "array", "items": {"type": "integer"}, "minItems": 1000000000}}}}'
    )
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(body)
    assert caught.value.param == "response_format"
    tools = (
        b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": '
        b'"function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}]}'
    )
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(tools)
    assert caught.value.param == "tools[0]"
