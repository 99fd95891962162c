"""Tools a model may decline (docs/architecture.md, "Planning rule"): with ``tool_choice``
``auto``, ``none`` or absent, models that can call tools rank first and the others answer in
text without them; a ``required`` or named choice needs the capability; the tools' size counts
against the context wherever they are offered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing.errors import CapabilityMissing, ContextLengthExceeded
from routing.planner import PlanRequest, plan
from routing.policy import Policy

from .conftest import models_policy, policy_from

# "caller" can call tools but scores far below "writer", which cannot.
MODELS = """
  - id: writer
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 4096
    input_usd_per_mtok: 0.1
    output_usd_per_mtok: 0.2
    quality: {general: [8.0]}
  - id: caller
    backend: openai
    model: m
    api_base: http://127.0.0.1:9/v1
    context_window: 1000
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality: {general: [2.0]}
"""


@pytest.fixture
def policy() -> Policy:
    return models_policy(MODELS)


def optional(**overrides: object) -> PlanRequest:
    values: dict[str, object] = {
        "task": "general",
        "prompt_tokens": 100,
        "optional_tools": True,
        "tool_tokens": 300,
    }
    values.update(overrides)
    return PlanRequest(**values)  # type: ignore[arg-type]


def test_a_model_that_can_call_the_tools_ranks_first_whatever_its_score(policy: Policy) -> None:
    chosen = plan(policy, optional())
    assert (chosen.model, chosen.offers_tools) == ("caller", True)
    # The writer is the fallback, answering in text without the tools.
    assert [(c.model, c.offers_tools) for c in chosen.attempts()] == [
        ("caller", True),
        ("writer", False),
    ]
    assert chosen.candidates[0].model == "caller"


def test_without_a_model_that_can_call_tools_the_request_is_answered_in_text(
    policy: Policy,
) -> None:
    chosen = plan(policy, optional(allowed=frozenset({"writer"})))
    assert (chosen.model, chosen.offers_tools) == ("writer", False)


def test_tools_the_context_cannot_hold_are_not_offered(policy: Policy) -> None:
    # caller holds 1000: 100 prompt + 200 answer + 800 tool tokens do not fit, so it is a
    # candidate without them and the better score wins again.
    chosen = plan(policy, optional(tool_tokens=800))
    assert (chosen.model, chosen.offers_tools) == ("writer", False)
    assert {(c.model, c.offers_tools) for c in chosen.attempts()} == {
        ("writer", False),
        ("caller", False),
    }


def test_a_forced_call_needs_the_capability_and_room_for_the_tools(policy: Policy) -> None:
    forced = PlanRequest(
        task="general", prompt_tokens=100, needs=frozenset({"tools"}), tool_tokens=300
    )
    chosen = plan(policy, forced)
    assert (chosen.model, chosen.offers_tools) == ("caller", True)
    with pytest.raises(CapabilityMissing) as lacking:
        plan(policy, replace(forced, pinned_model="writer"))
    assert lacking.value.param == "tools"
    with pytest.raises(ContextLengthExceeded) as overflow:
        plan(policy, replace(forced, tool_tokens=800))
    # Without the tools the prompt would fit: the tools are what is too long.
    assert overflow.value.param == "tools"
    assert "800 of them the tools" in overflow.value.message


@pytest.mark.parametrize("unsupported", ["answer_in_text", "refuse"])
def test_the_policy_may_refuse_tools_it_cannot_offer(unsupported: str) -> None:
    # Only the writer has quality for the task, and it cannot call tools.
    models = MODELS.replace("quality: {general: [2.0]}", "quality: {}")
    policy = policy_from(
        "version: 1\ndefault_task: general\n"
        f"tools: {{unsupported: {unsupported}}}\n"
        "tasks:\n  general: {max_rounds: 0, answer_tokens: 200}\n"
        f"models:{models}"
    )
    if unsupported == "answer_in_text":
        assert (plan(policy, optional()).model, plan(policy, optional()).offers_tools) == (
            "writer",
            False,
        )
        return
    with pytest.raises(CapabilityMissing) as caught:
        plan(policy, optional())
    assert caught.value.param == "tools"


def test_requests_without_tools_plan_as_before(policy: Policy) -> None:
    chosen = plan(policy, PlanRequest(task="general", prompt_tokens=100))
    assert (chosen.model, chosen.offers_tools) == ("writer", False)
    assert all(not c.offers_tools for c in chosen.candidates)
