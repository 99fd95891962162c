"""Building blocks of the policy schema: the strict frozen base model and constrained types.

Strict means no coercion: ``"3"`` is not an integer, ``1`` is not ``true``; YAML lists are
accepted where the schema holds tuples.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


class PolicyModel(BaseModel):
    """Base of every policy section: unknown keys rejected, no coercion, frozen, finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def as_tuple(value: object) -> object:
    """A list becomes a tuple (YAML has lists; the schema holds immutable tuples)."""
    return tuple(value) if isinstance(value, list) else value


def one_or_many(value: object) -> object:
    """A single string becomes a one-item tuple; a list becomes a tuple."""
    return (value,) if isinstance(value, str) else as_tuple(value)


def _name(value: str) -> str:
    if not value or any(character.isspace() for character in value):
        raise ValueError("must be a non-empty name without whitespace")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
PositiveCount = Annotated[int, Field(ge=1)]
Score = Annotated[float, Field(ge=0, le=10)]
QualityList = Annotated[tuple[Score, ...], BeforeValidator(as_tuple), Field(min_length=1)]
Name = Annotated[str, AfterValidator(_name)]
Text = Annotated[str, AfterValidator(_text)]
Url = Annotated[str, AfterValidator(_url)]
