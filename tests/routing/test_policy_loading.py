"""Loading policy files: every problem reported as FILE:LINE: field.path: message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from routing.errors import PolicyError, PolicyProblem
from routing.policy_loader import load_policy, parse_policy

VALID = """\
version: 1
default_task: general
tasks:
  general: {max_rounds: 1, answer_tokens: 300}
  coding: {max_rounds: 2, answer_tokens: 400}
aliases:
  gpt-4o: {task: general}
models:
  - id: small
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 2048
    hardware: {usd_per_hour: 0.05, prefill_tokens_per_s: 1500, decode_tokens_per_s: 130}
    quality: {default: [3.0, 3.2]}
"""
# Line numbers in VALID: 1 version, 3 tasks, 4 general, 6 aliases, 7 gpt-4o, 8 models,
# 9 "- id: small", 10 backend, 12 context_window, 13 hardware, 14 quality.


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    error = caught.value
    assert str(error) == "\n".join(str(problem) for problem in error.problems)
    assert error.code == "invalid_policy"
    return str(error).splitlines()


def edit(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


def test_valid_policy_loads_with_defaults() -> None:
    policy = parse_policy(VALID, "p.yaml")
    assert policy.weights.performance == 1.0
    assert policy.weights.cost == 0.05
    assert policy.cost_reference_usd == 0.001
    assert policy.refinement.stop_phrase == "NO ISSUES"
    assert "{stop_phrase}" in policy.refinement.critique_prompt
    assert policy.refinement.log_content is False
    assert policy.server.queue_size == 16
    assert policy.admin.api_key_env is None
    assert policy.models[0].options.n_batch == 512  # type: ignore[union-attr]


def test_unknown_key() -> None:
    assert problems(edit("version: 1\n", "version: 1\nbogus_key: 3\n")) == [
        "p.yaml:2: bogus_key: unknown key"
    ]
    assert problems(
        edit("    context_window: 2048\n", "    context_window: 2048\n    color: red\n")
    ) == ["p.yaml:13: models.0.color: unknown key"]


def test_wrong_type() -> None:
    assert problems(edit("context_window: 2048", 'context_window: "2048"')) == [
        "p.yaml:12: models.0.context_window: must be an integer, got '2048'"
    ]
    assert problems(edit("[3.0, 3.2]", "[3.0, high]")) == [
        "p.yaml:14: models.0.quality.default.1: must be a number, got 'high'"
    ]


def test_missing_field_points_at_the_parent_mapping() -> None:
    assert problems(edit("    context_window: 2048\n", "")) == [
        "p.yaml:9: models.0.context_window: required field is missing"
    ]
    assert problems(edit("{max_rounds: 2, answer_tokens: 400}", "{max_rounds: 2}")) == [
        "p.yaml:5: tasks.coding.answer_tokens: required field is missing"
    ]
    assert problems(VALID.replace("version: 1\n", "")) == [
        "p.yaml:1: version: required field is missing"
    ]


def test_duplicate_model_ids() -> None:
    second = VALID[VALID.index("  - id: small") :]
    assert problems(VALID + second) == [
        "p.yaml:15: models.1.id: duplicate model id 'small' (models.0)"
    ]


def test_alias_with_an_undeclared_task_and_reserved_names() -> None:
    assert problems(edit("{task: general}", "{task: poetry}")) == [
        "p.yaml:7: aliases.gpt-4o.task: unknown task 'poetry' (declared tasks: general, coding)"
    ]
    assert problems(edit("  gpt-4o: {task: general}", "  auto: {}\n  small: {}")) == [
        "p.yaml:7: aliases.auto: 'auto' is reserved",
        "p.yaml:8: aliases.small: 'small' is also a model id",
    ]
    assert problems(edit("default_task: general", "default_task: chat")) == [
        "p.yaml:2: default_task: unknown task 'chat' (declared tasks: general, coding)"
    ]


def test_pricing_both_ways_half_given_or_missing() -> None:
    both = edit(
        "    quality:", "    input_usd_per_mtok: 1.0\n    output_usd_per_mtok: 2.0\n    quality:"
    )
    assert problems(both) == [
        "p.yaml:13: models.0.hardware: price the model one way: input/output_usd_per_mtok or "
        "hardware"
    ]
    hardware = (
        "    hardware: {usd_per_hour: 0.05, prefill_tokens_per_s: 1500, decode_tokens_per_s: 130}"
    )
    half = VALID.replace(hardware, "    input_usd_per_mtok: 1.0")
    assert problems(half) == [
        "p.yaml:9: models.0.output_usd_per_mtok: input_usd_per_mtok and output_usd_per_mtok "
        "go together"
    ]
    none = VALID.replace(hardware + "\n", "")
    assert problems(none) == [
        "p.yaml:9: models.0: no pricing: give input_usd_per_mtok and output_usd_per_mtok, "
        "or hardware"
    ]


def test_quality_out_of_range_empty_or_for_an_undeclared_task() -> None:
    assert problems(edit("[3.0, 3.2]", "[3.0, 10.5]")) == [
        "p.yaml:14: models.0.quality.default.1: must be <= 10, got 10.5"
    ]
    assert problems(edit("{default: [3.0, 3.2]}", "{default: []}")) == [
        "p.yaml:14: models.0.quality.default: must not be empty"
    ]
    assert problems(edit("{default: [3.0, 3.2]}", "{poetry: [3.0]}")) == [
        "p.yaml:14: models.0.quality.poetry: unknown task 'poetry' (quality keys are declared "
        "tasks or 'default')"
    ]


def test_backend_rules() -> None:
    assert problems(edit("backend: llamacpp", "backend: vllm")) == [
        "p.yaml:9: models.0.api_base: required for backend vllm"
    ]
    assert problems(edit("backend: llamacpp", "backend: tgi")) == [
        "p.yaml:10: models.0.backend: unknown backend 'tgi'; known: llamacpp, openai, vllm, litellm"
    ]
    local_url = edit("    context_window", "    api_base: http://x:8000/v1\n    context_window")
    assert problems(local_url) == [
        "p.yaml:12: models.0.api_base: not allowed for backend llamacpp (it runs in-process)"
    ]
    options = edit("    quality:", "    options: {n_threads: 0, read_timeout_s: 5}\n    quality:")
    assert problems(options) == [
        "p.yaml:14: models.0.options.n_threads: must be >= 1, got 0",
        "p.yaml:14: models.0.options.read_timeout_s: unknown key",
    ]


def test_yaml_syntax_error() -> None:
    lines = problems("version: 1\ntasks: {general: [1, 2}\n")
    assert len(lines) == 1
    assert lines[0].startswith("p.yaml:2: (syntax): ")
    assert problems("") == ["p.yaml:1: (root): the policy must be a YAML mapping"]
    assert problems("- 1\n- 2\n") == ["p.yaml:1: (root): the policy must be a YAML mapping"]


def test_duplicate_yaml_key() -> None:
    assert problems(edit("  coding: {max_rounds", "  general: {max_rounds")) == [
        "p.yaml:5: tasks.general: duplicate key (first at line 4)"
    ]


def test_several_problems_at_once_sorted_by_line() -> None:
    text = (
        VALID.replace("version: 1\n", "version: 2\n")
        .replace("{task: general}", "{task: poetry}")
        .replace("context_window: 2048", "context_window: -5")
        .replace("[3.0, 3.2]", "[3.0, 11]")
    )
    assert problems(text) == [
        "p.yaml:1: version: must be 1, got 2",
        "p.yaml:7: aliases.gpt-4o.task: unknown task 'poetry' (declared tasks: general, coding)",
        "p.yaml:12: models.0.context_window: must be >= 1, got -5",
        "p.yaml:14: models.0.quality.default.1: must be <= 10, got 11",
    ]


def test_critique_prompt_needs_the_stop_phrase_placeholder() -> None:
    text = VALID + 'refinement: {critique_prompt: "Find problems."}\n'
    assert problems(text) == [
        "p.yaml:15: refinement.critique_prompt: must contain the placeholder {stop_phrase}"
    ]
    text = VALID + 'refinement: {critique_prompt: "Say {stop_phrase} or {other}."}\n'
    assert "may hold no placeholder but {stop_phrase}" in problems(text)[0]


def test_load_policy_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(VALID.replace("version: 1", "version: 1\nbogus: 1"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.problems == (PolicyProblem(str(path), 2, "bogus", "unknown key"),)
    path.write_text(VALID)
    assert load_policy(str(path)).models[0].id == "small"
    with pytest.raises(PolicyError) as missing:
        load_policy(tmp_path / "absent.yaml")
    assert missing.value.problems[0].path == "(root)"


def test_the_design_example_loads() -> None:
    text = textwrap.dedent(
        """\
        version: 1
        default_task: general
        weights: {performance: 1.0, refinement: 0.5, cost: 0.05}
        cost_reference_usd: 0.001
        reference_model: {id: gpt-4o, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10.0}
        refinement: {critique_max_tokens: 256, template_tokens: 64, stop_phrase: "NO ISSUES"}
        selection: {temperature: 0.8}
        tasks:
          general: {max_rounds: 1, answer_tokens: 300}
          coding:  {max_rounds: 2, max_samples: 8, answer_tokens: 400,
                    keywords: [python, function, bug, code]}
        aliases:
          gpt-4o: {task: general}
        models:
          - id: smollm2-135m
            backend: llamacpp
            model: bundled:smollm2-135m
            context_window: 2048
            hardware: {usd_per_hour: 0.05, prefill_tokens_per_s: 1500, decode_tokens_per_s: 130}
            defaults: {temperature: 0.2, top_p: 0.9}   # sampling when the client sends none
            quality:
              default: [3.0, 3.2]
              coding: {refine: [0.3, 0.3], best_of: {8: 1.5}}
        """
    )
    policy = parse_policy(text, "design.yaml")
    assert policy.tasks["coding"].keywords == ("python", "function", "bug", "code")
    assert policy.tasks["coding"].max_samples == 8
    assert policy.tasks["general"].max_samples == 1
    spec = policy.models[0]
    assert spec.quality_for("coding") == (0.3, 0.3)
    assert spec.sampled_quality("coding") == (("best_of", 8, 1.5),)
    assert spec.defaults.given() == {"temperature": 0.2, "top_p": 0.9}
    assert policy.selection.temperature == 0.8
    assert policy.selection.checks is True


def test_selection_defaults() -> None:
    selection = parse_policy(VALID, "p.yaml").selection
    assert (selection.temperature, selection.checks, selection.time_limit_s) == (0.8, True, 10.0)


def test_technique_quality_problems_at_their_own_paths() -> None:
    def quality(entry: str) -> list[str]:
        return problems(edit("quality: {default: [3.0, 3.2]}", f"quality: {{coding: {entry}}}"))

    assert quality("{best_of: {4: 5.0}}") == [
        "p.yaml:14: models.0.quality.coding.refine: required field is missing"
    ]
    assert quality("{refine: [3.0], best_of: {1: 5.0, 0: 5.0}}") == [
        "p.yaml:14: models.0.quality.coding.best_of: sample counts (the keys) must be at least "
        "2, got 0, 1"
    ]
    assert quality("{refine: [3.0], best_of: {4: 11}}") == [
        "p.yaml:14: models.0.quality.coding.best_of.4: must be <= 10, got 11"
    ]
    assert quality('{refine: [3.0], vote: {"5": 5.0}}') == [
        "p.yaml:14: models.0.quality.coding.vote.5: must be an integer, got '5'"
    ]
    assert quality("{refine: [3.0], majority: {5: 5.0}}") == [
        "p.yaml:14: models.0.quality.coding.majority: unknown key"
    ]
    assert quality("{refine: []}") == [
        "p.yaml:14: models.0.quality.coding.refine: must not be empty"
    ]
    assert quality("[3.0, 12]") == ["p.yaml:14: models.0.quality.coding.1: must be <= 10, got 12"]
    assert quality("high") == ["p.yaml:14: models.0.quality.coding: must be a list, got 'high'"]


def test_sampling_defaults_and_the_backends_that_apply_them() -> None:
    assert problems(
        edit("    quality:", "    defaults: {temperature: 2.5, top_p: 0, seed: 3}\n    quality:")
    ) == [
        "p.yaml:14: models.0.defaults.seed: unknown key",
        "p.yaml:14: models.0.defaults.temperature: must be <= 2, got 2.5",
        "p.yaml:14: models.0.defaults.top_p: must be > 0, got 0",
    ]
    remote = edit(
        "    backend: llamacpp\n    model: bundled:smollm2-135m\n",
        "    backend: openai\n    model: m\n    api_base: http://127.0.0.1:9/v1\n",
    )
    assert problems(
        remote.replace("    quality:", "    defaults: {temperature: 0.2, top_k: 40}\n    quality:")
    ) == [
        "p.yaml:15: models.0.defaults.top_k: backend openai cannot apply top_k (it applies: "
        "temperature, top_p, max_tokens)"
    ]


def test_max_samples_fields() -> None:
    assert problems(
        edit("general: {max_rounds: 1,", "general: {max_rounds: 1, max_samples: 0,")
    ) == ["p.yaml:4: tasks.general.max_samples: must be >= 1, got 0"]
    assert problems(edit("gpt-4o: {task: general}", "gpt-4o: {max_samples: -1}")) == [
        "p.yaml:7: aliases.gpt-4o.max_samples: must be >= 0, got -1"
    ]


def test_litellm_params_may_not_override_what_the_proxy_sets() -> None:
    text = textwrap.dedent(
        """\
        version: 1
        default_task: g
        tasks: {g: {max_rounds: 0, answer_tokens: 5}}
        models:
          - id: m
            backend: litellm
            model: openai/x
            context_window: 2048
            input_usd_per_mtok: 0
            output_usd_per_mtok: 0
            quality: {default: [1]}
            options: {params: {timeout: 3, top_k: 2, stream: true}}
        """
    )
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    assert str(info.value) == (
        "p.yaml:12: models.0.options.params: set by the proxy, not in params: stream, timeout"
    )
    allowed = text.replace("timeout: 3, ", "").replace(", stream: true", "")
    assert parse_policy(allowed, "p.yaml").models[0].options.params == {"top_k": 2}  # type: ignore[union-attr]
