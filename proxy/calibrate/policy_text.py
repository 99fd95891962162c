"""Where a value sits in a policy file's text, and quality figures written as its YAML.

The writer (``policy_writer``) edits a policy by lines: ruamel.yaml's round-trip parser gives
each key's and value's line and column, ``value_end`` the line after a value, and the
helpers here render quality figures in the flow style the edits write (``[Q0, Q1]``,
``{4: Q, 8: Q}``) or read an existing one back with its comment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap


def value_end(lines: list[str], start: int, key_col: int) -> int:
    """The line after the value of the key at (``start``, ``key_col``): the value runs on
    through lines indented deeper than the key; trailing blank and comment-only lines are left
    outside, since they introduce what follows."""
    end = start + 1
    while end < len(lines):
        stripped = lines[end].strip()
        indent = len(lines[end]) - len(lines[end].lstrip(" "))
        if stripped and not stripped.startswith("#") and indent <= key_col:
            break
        end += 1
    while end > start + 1 and (
        not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")
    ):
        end -= 1
    return end


def eol_comment(mapping: CommentedMap, key: str) -> str:
    """The end-of-line comment after ``key``'s value, as ``"  # text"``, or ``""``."""
    slots = mapping.ca.items.get(key)
    token = slots[2] if slots and len(slots) > 2 else None
    if token is None:
        return ""
    first = str(token.value).split("\n", 1)[0].strip()
    return f"  {first}" if first.startswith("#") else ""


def flow(values: Any) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def render(value: Any) -> str:
    """A quality value in flow style: ``[Q0, Q1]``, ``{4: Q, 8: Q}``, or a mapping of those."""
    if isinstance(value, Mapping):
        inner = (
            f"{k}: {render(v) if isinstance(v, Mapping | list | tuple) else repr(float(v))}"
            for k, v in value.items()
        )
        return "{" + ", ".join(inner) + "}"
    return flow(value)


def old_value(lines: list[str], mapping: CommentedMap, key: str) -> str:
    """``mapping[key]``'s value as written, with its comment: the text itself when it sits on
    the key's line of a block mapping, else the value rendered again with that comment."""
    key_line, key_col = mapping.lc.key(key)
    line, col = mapping.lc.value(key)
    if (
        not mapping.fa.flow_style()
        and line == key_line
        and value_end(lines, key_line, key_col) == key_line + 1
    ):
        written: str = lines[line][col:]
        return written.rstrip("\n")
    comment = "" if mapping.fa.flow_style() else eol_comment(mapping, key)
    return render(mapping[key]) + comment
