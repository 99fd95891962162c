"""Declarations: precedence header > body > alias > classifier > default, and bad values."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import pytest

from routing.declarations import Declarations, resolve_declarations
from routing.errors import InvalidDeclaration, UnknownModel
from routing.policy import Policy


def resolve(
    policy: Policy,
    *,
    model: str = "auto",
    headers: Mapping[str, str] | None = None,
    body: Mapping[str, object] | None = None,
    text: str = "",
) -> Declarations:
    return resolve_declarations(
        policy, model=model, headers=headers or {}, body=body, last_user_text=text
    )


def test_nothing_declared_gives_the_default(two_models: Policy) -> None:
    declared = resolve(two_models, text="hello there")
    assert declared == Declarations(
        task="general",
        task_source="default",
        budget_usd=None,
        budget_source=None,
        max_rounds=None,
        trace=False,
        pinned_model=None,
        alias=None,
    )


def test_task_precedence(two_models: Policy) -> None:
    text = "write a python function"  # the classifier says coding
    assert (resolve(two_models, text=text).task, resolve(two_models, text=text).task_source) == (
        "coding",
        "classifier",
    )
    alias = resolve(two_models, model="gpt-4o", text=text)
    assert (alias.task, alias.task_source, alias.alias) == ("general", "alias", "gpt-4o")
    body = resolve(two_models, model="gpt-4o", body={"task": "short"}, text=text)
    assert (body.task, body.task_source) == ("short", "body")
    header = resolve(
        two_models,
        model="gpt-4o",
        headers={"x-perfics-task": "coding"},
        body={"task": "short"},
        text=text,
    )
    assert (header.task, header.task_source) == ("coding", "header")


def test_alias_without_task_leaves_it_to_the_classifier(two_models: Policy) -> None:
    declared = resolve(two_models, model="cheap", text="quick question")
    assert (declared.task, declared.task_source) == ("short", "classifier")
    assert (declared.budget_usd, declared.budget_source, declared.max_rounds) == (
        0.0004,
        "alias",
        1,
    )


def test_budget_and_rounds_precedence(two_models: Policy) -> None:
    body = resolve(two_models, model="cheap", body={"budget_usd": 0.01, "max_rounds": 2})
    assert (body.budget_usd, body.budget_source, body.max_rounds) == (0.01, "body", 2)
    header = resolve(
        two_models,
        model="cheap",
        headers={"x-perfics-budget-usd": " 0.5 ", "x-perfics-max-rounds": "0"},
        body={"budget_usd": 0.01, "max_rounds": 2},
    )
    assert (header.budget_usd, header.budget_source, header.max_rounds) == (0.5, "header", 0)
    integer_budget = resolve(two_models, body={"budget_usd": 1})
    assert integer_budget.budget_usd == 1.0
    assert isinstance(integer_budget.budget_usd, float)
    assert resolve(two_models, headers={"x-perfics-budget-usd": "1e-5"}).budget_usd == 1e-5
    assert resolve(two_models, body={"budget_usd": None}).budget_usd is None
    # The largest finite budgets are budgets (they never bind); one step beyond is not finite.
    assert resolve(two_models, headers={"x-perfics-budget-usd": "1e308"}).budget_usd == 1e308
    largest = resolve(two_models, body={"budget_usd": sys.float_info.max})
    assert largest.budget_usd == sys.float_info.max


def test_sample_cap_precedence(two_models: Policy) -> None:
    assert resolve(two_models).max_samples is None
    assert resolve(two_models, model="cheap").max_samples == 2
    assert resolve(two_models, model="cheap", body={"max_samples": 8}).max_samples == 8
    header = resolve(
        two_models,
        model="cheap",
        headers={"x-perfics-max-samples": " 1 "},
        body={"max_samples": 8},
    )
    assert header.max_samples == 1
    assert resolve(two_models, headers={"x-perfics-max-samples": ""}).max_samples is None
    assert resolve(two_models, body={"max_samples": 0}).max_samples == 0


def test_model_auto_alias_or_pinned(two_models: Policy) -> None:
    pinned = resolve(two_models, model="small")
    assert (pinned.pinned_model, pinned.alias) == ("small", None)
    with pytest.raises(UnknownModel) as caught:
        resolve(two_models, model="gpt-5")
    assert (caught.value.param, caught.value.code) == ("model", "model_not_found")
    assert "gpt-5" in caught.value.message


@pytest.mark.parametrize(
    ("headers", "body", "param"),
    [
        ({"x-perfics-task": "astrology"}, None, "task"),
        ({}, {"task": "astrology"}, "task"),
        ({}, {"task": 3}, "task"),
        ({"x-perfics-budget-usd": "-1"}, None, "budget_usd"),
        ({"x-perfics-budget-usd": "lots"}, None, "budget_usd"),
        ({"x-perfics-budget-usd": "nan"}, None, "budget_usd"),
        ({"x-perfics-budget-usd": "inf"}, None, "budget_usd"),
        ({"x-perfics-budget-usd": "1e999"}, None, "budget_usd"),
        ({"x-perfics-budget-usd": "1.8e308"}, None, "budget_usd"),
        ({}, {"budget_usd": float("nan")}, "budget_usd"),
        ({}, {"budget_usd": -0.5}, "budget_usd"),
        ({}, {"budget_usd": "0.5"}, "budget_usd"),
        ({}, {"budget_usd": True}, "budget_usd"),
        ({}, {"budget_usd": float("inf")}, "budget_usd"),
        ({"x-perfics-max-rounds": "-2"}, None, "max_rounds"),
        ({"x-perfics-max-rounds": "1.5"}, None, "max_rounds"),
        ({"x-perfics-max-rounds": "2_0"}, None, "max_rounds"),
        ({}, {"max_rounds": "two"}, "max_rounds"),
        ({}, {"max_rounds": 1.0}, "max_rounds"),
        ({}, {"max_rounds": False}, "max_rounds"),
        ({}, {"max_rounds": -1}, "max_rounds"),
        ({"x-perfics-max-samples": "-1"}, None, "max_samples"),
        ({"x-perfics-max-samples": "eight"}, None, "max_samples"),
        ({"x-perfics-max-samples": "4"}, {"max_samples": "4"}, "max_samples"),
        ({}, {"max_samples": 4.0}, "max_samples"),
        ({}, {"max_samples": True}, "max_samples"),
        ({}, {"max_samples": -3}, "max_samples"),
        ({}, {"trace": "yes"}, "trace"),
        ({}, {"tsak": "general"}, "perfics.tsak"),
    ],
)
def test_bad_values_name_the_field(
    two_models: Policy, headers: dict[str, str], body: dict[str, object] | None, param: str
) -> None:
    with pytest.raises(InvalidDeclaration) as caught:
        resolve(two_models, headers=headers, body=body)
    assert caught.value.param == param
    assert caught.value.code == "invalid_value"


def test_blank_headers_count_as_absent(two_models: Policy) -> None:
    declared = resolve(
        two_models,
        headers={"x-perfics-task": " ", "x-perfics-budget-usd": "", "x-perfics-max-rounds": ""},
    )
    assert (declared.task_source, declared.budget_usd, declared.max_rounds) == (
        "default",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("headers", "body", "trace"),
    [
        ({}, None, False),
        ({"x-perfics-trace": "1"}, None, True),
        ({"x-perfics-trace": "TRUE"}, None, True),
        ({"x-perfics-trace": "yes"}, None, True),
        ({"x-perfics-trace": "0"}, None, False),
        ({}, {"trace": True}, True),
        ({}, {"trace": False}, False),
    ],
)
def test_trace(
    two_models: Policy, headers: dict[str, str], body: dict[str, object] | None, trace: bool
) -> None:
    assert resolve(two_models, headers=headers, body=body).trace is trace
