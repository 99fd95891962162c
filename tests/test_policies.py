"""The shipped policies: every file under policies/ is valid, and each keeps its promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy import cli
from routing.planner import PlanRequest, plan
from routing.policy import Policy
from routing.policy_loader import load_policy
from routing.quality_provenance import calibrated_quality

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
    assert policy.reference_model is not None
    assert policy.reference_model.id == "gpt-4o"
    assert policy.refinement.log_content is False
    assert "benchmarks.hardware" in (POLICIES / "default.yaml").read_text()


def _gain(policy: Policy, model: str, task: str) -> float:
    quality = policy.model(model).quality_for(task)
    assert quality is not None
    return (max(quality) - quality[0]) / quality[0]


def test_default_quality_is_measured_and_extra_compute_is_planned_only_where_it_helped() -> None:
    """Every quality figure in the default policy was written by ``perfics calibrate`` (its
    comment says so: each list, and each technique table where a task lists one), and the
    planner pays for rounds or samples only where the measured figure rises above the
    draft's."""
    policy = load_policy(POLICIES / "default.yaml")
    calibrated = calibrated_quality((POLICIES / "default.yaml").read_text())
    for spec in policy.models:
        assert set(spec.quality) == set(policy.tasks), spec.id
        for task in spec.quality:
            assert (spec.id, task) in calibrated, (spec.id, task)
            for technique in {t for t, _, _ in spec.sampled_quality(task)}:
                assert (spec.id, f"{task}.{technique}") in calibrated, (spec.id, task)
    for task in policy.tasks:
        for prompt_tokens in (20, 200, 800):
            chosen = plan(policy, PlanRequest(task=task, prompt_tokens=prompt_tokens))
            quality = policy.model(chosen.model).quality_for(task)
            assert quality is not None
            if chosen.samples > 1:
                sampled = policy.model(chosen.model).sampled_quality(task)
                q = next(q for t, k, q in sampled if (t, k) == (chosen.technique, chosen.samples))
                assert q > quality[0], (task, chosen)
            else:
                assert chosen.rounds == 0 or quality[chosen.rounds] > quality[0], (task, chosen)


def test_bundled_models_sample_as_their_model_cards_say_when_the_client_sends_nothing() -> None:
    policy = load_policy(POLICIES / "default.yaml")
    assert policy.model("smollm2-135m").defaults.given() == {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 2048,  # not the card's: the bound on an answer the client did not cap
    }
    assert policy.model("gemma3-270m").defaults.given() == {
        "temperature": 1.0,
        "top_k": 64,
        "top_p": 0.95,
        "max_tokens": 2048,
    }


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
    assert hosted.api_key_env == "ANTHROPIC_API_KEY"
    assert hosted.hardware is None
