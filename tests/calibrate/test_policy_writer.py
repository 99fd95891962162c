"""Writing calibrated figures back: comments and other keys survive, the result loads, an
invalid result is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxy.calibrate.policy_writer import (
    apply_calibration,
    calibrated_lists,
    diff,
    write_policy,
)
from proxy.calibrate.scores import Calibration, Cell, TechniqueCell
from proxy.calibrate.throughput import Throughput
from routing.errors import PolicyError
from routing.policy_loader import load_policy, parse_policy
from routing.quality_provenance import calibrated_quality

from .conftest import POLICY

DATE = "2026-11-29"


def calibration(**throughput: Throughput) -> Calibration:
    cells = [
        Cell("general", "alpha", 0, (("q1", 4.0), ("q2", 5.0)), 0),
        Cell("general", "alpha", 1, (("q1", 6.0), ("q2", 5.0)), 0),
        Cell("math", "alpha", 0, (("q1", 3.0),), 1),
        Cell("math", "alpha", 1, (("q1", 7.25),), 1),
        Cell("general", "beta", 0, (("q1", 2.0), ("q2", 3.0)), 0),
        Cell("general", "beta", 1, (), 2),  # nothing graded: beta's list is not touched
    ]
    return Calibration("judge", 1, tuple(cells), (), throughput)


def test_quality_lists_written_with_their_provenance() -> None:
    original = POLICY.read_text()
    edited = apply_calibration(original, calibration(), date=DATE, hardware=False)
    text = edited.text
    # r1 - r0 per question: +2, 0 -> mean 1, s = sqrt(2), se = 1, t(0.975, 1) = 12.706.
    assert (
        "    general: [4.5, 5.5]  # calibrated 2026-11-29: n=2, judge=judge; "
        "r1 +1.00 [-11.71, +13.71], not shown" in text
    )
    assert (
        "    math: [3.0, 7.25]  # calibrated 2026-11-29: n=1, judge=judge; "
        "r1 +4.25 (n=1), not shown" in text
    )
    policy = parse_policy(text, "calibrated.yaml")
    alpha, beta = policy.model("alpha"), policy.model("beta")
    assert alpha.quality == {
        "default": (3.0, 3.2, 3.3),
        "creative": (4.0, 4.5),  # no questions for creative: kept
        "general": (4.5, 5.5),
        "math": (3.0, 7.25),
    }
    assert beta.quality == {"default": (2.0, 2.5)}
    assert edited.changes == (
        "alpha.quality.general: (default) -> [4.5, 5.5]",
        "alpha.quality.math: (default) -> [3.0, 7.25]",
    )


def test_everything_else_is_kept_comments_included() -> None:
    original = POLICY.read_text()
    text = apply_calibration(original, calibration(), date=DATE, hardware=False).text
    for line in original.splitlines():
        if "#" in line:
            assert line.strip() in text, line
    before, after = yaml.safe_load(original), yaml.safe_load(text)
    for model in (*before["models"], *after["models"]):
        model.pop("quality")
    assert before == after
    lines = diff(original, text, "p.yaml").splitlines()[2:]
    removed = [line[1:] for line in lines if line.startswith("-")]
    added = [line[1:] for line in lines if line.startswith("+")]
    assert removed == ["    quality: {default: [3.0, 3.2, 3.3], creative: [4.0, 4.5]}"]
    assert [line.split("#")[0].rstrip() for line in added] == [
        "    quality:",
        "      default: [3.0, 3.2, 3.3]",
        "      creative: [4.0, 4.5]",
        "      general: [4.5, 5.5]",
        "      math: [3.0, 7.25]",
    ]


def test_rewriting_twice_replaces_the_comment() -> None:
    once = apply_calibration(POLICY.read_text(), calibration(), date=DATE, hardware=False).text
    assert calibrated_lists(POLICY.read_text()) == frozenset()
    assert calibrated_lists(once) == {("alpha", "general"), ("alpha", "math")}
    twice = apply_calibration(once, calibration(), date="2026-12-01", hardware=False).text
    assert twice.count("calibrated") == 2
    assert "2026-11-29" not in twice
    assert "calibrated 2026-12-01" in twice


def test_uneven_counts_are_spelled_out() -> None:
    cells = (
        Cell("general", "alpha", 0, (("q1", 4.0), ("q2", 5.0)), 0),
        Cell("general", "alpha", 1, (("q1", 6.0),), 1),
    )
    text = apply_calibration(
        POLICY.read_text(), Calibration("j", 1, cells, ()), date=DATE, hardware=False
    ).text
    assert (
        "general: [4.5, 6.0]  # calibrated 2026-11-29: n=2,1, judge=j; r1 +2.00 (n=1), not shown"
        in text
    )


def test_hardware_only_on_request_and_only_for_hardware_priced_models() -> None:
    speeds = {
        "alpha": Throughput(812.4, 97.6, 3),
        "beta": Throughput(900.0, 100.0, 3),
    }
    original = POLICY.read_text()
    without = apply_calibration(original, calibration(**speeds), date=DATE, hardware=False)
    assert "prefill_tokens_per_s: 1500" in without.text
    edited = apply_calibration(original, calibration(**speeds), date=DATE, hardware=True)
    assert (
        "    hardware: {usd_per_hour: 0.05, prefill_tokens_per_s: 812, decode_tokens_per_s: 98}"
        f"  # measured {DATE}: 3 draft calls\n" in edited.text
    )
    hardware = parse_policy(edited.text, "x.yaml").model("alpha").hardware
    assert hardware is not None
    assert (hardware.prefill_tokens_per_s, hardware.decode_tokens_per_s) == (812, 98)
    assert hardware.usd_per_hour == 0.05
    assert any("beta: priced per token" in note for note in edited.notes)
    assert parse_policy(edited.text, "x.yaml").model("beta").hardware is None


def test_write_validates_and_refuses_an_invalid_policy(tmp_path: Path) -> None:
    target = tmp_path / "policy.yaml"
    target.write_text(POLICY.read_text())
    good = apply_calibration(target.read_text(), calibration(), date=DATE, hardware=False).text
    target.chmod(0o640)
    write_policy(target, good)
    assert load_policy(target).model("alpha").quality["general"] == (4.5, 5.5)
    assert target.stat().st_mode & 0o777 == 0o640  # an in-place rewrite keeps the mode

    bad = good.replace("default_task: general", "default_task: poetry")
    with pytest.raises(PolicyError, match=r"policy\.yaml:\d+: default_task"):
        write_policy(target, bad)
    assert target.read_text() == good
    assert [p.name for p in tmp_path.iterdir()] == ["policy.yaml"]  # no temporary left


LAYOUT = """\
version: 1
default_task: general
tasks:
{i}general: {{max_rounds: 1, answer_tokens: 10}}
models:
{s}id: alpha
{m}backend: llamacpp
{m}model: bundled:smollm2-135m
{m}context_window: 2048
{m}input_usd_per_mtok: 1.0
{m}output_usd_per_mtok: 1.0
{m}quality:
{m}{i}default: [5.0]
"""


@pytest.mark.parametrize(
    ("indent", "dash"), [(2, "- "), (2, "  - "), (4, "- "), (4, "    - "), (4, "  - ")]
)
def test_indentation_is_kept(indent: int, dash: str) -> None:
    text = LAYOUT.format(i=" " * indent, s=dash, m=" " * len(dash))
    cells = (
        Cell("general", "alpha", 0, (("q1", 5.0),), 0),
        Cell("general", "alpha", 1, (("q1", 6.0),), 0),
    )
    edited = apply_calibration(text, Calibration("j", 1, cells, ()), date=DATE, hardware=False)
    added = f"{' ' * (len(dash) + indent)}general: [5.0, 6.0]  # calibrated {DATE}: n=1"
    assert edited.text.startswith(text)
    assert edited.text[len(text) :].startswith(added)


def test_comments_after_the_quality_block_stay_below_it() -> None:
    text = LAYOUT.format(i="  ", s="  - ", m="    ").replace(
        "    quality:\n      default: [5.0]\n",
        "    quality: {default: [5.0]}  # guessed\n\n  # the next model is missing\n",
    )
    cells = (
        Cell("general", "alpha", 0, (("q1", 5.0),), 0),
        Cell("general", "alpha", 1, (("q1", 6.0),), 0),
    )
    edited = apply_calibration(text, Calibration("j", 1, cells, ()), date=DATE, hardware=False)
    assert edited.text.endswith(
        "    quality:  # guessed\n"
        "      default: [5.0]\n"
        f"      general: [5.0, 6.0]  # calibrated {DATE}: n=1, judge=j; r1 +1.00 (n=1), not shown\n"
        "\n"
        "  # the next model is missing\n"
    )


def test_calibrating_the_default_policy_touches_only_quality_lines() -> None:
    original = (Path(__file__).parents[2] / "policies" / "default.yaml").read_text()
    policy = parse_policy(original, "default.yaml")
    model = policy.models[0].id
    cells = tuple(
        Cell(task, model, r, (("q1", 5.0 + r),), 0) for task in policy.tasks for r in range(2)
    )
    text = apply_calibration(
        original, Calibration("j", 1, cells, ()), date=DATE, hardware=False
    ).text
    parse_policy(text, "default.yaml")
    lines = diff(original, text, "d").splitlines()[2:]
    changed = [line for line in lines if line[:1] in "+-"]
    assert changed
    assert all("calibrated" in line for line in changed if line.startswith("+"))
    assert len([line for line in changed if line.startswith("+")]) == len(policy.tasks)


def test_a_model_without_quality_gets_a_block() -> None:
    text = (
        LAYOUT.format(i="  ", s="  - ", m="    ")
        .replace("    quality:\n      default: [5.0]\n", "    context_window: 2048\n")
        .replace("    context_window: 2048\n", "", 1)
    )
    text += "  - id: other\n    backend: llamacpp\n    model: x.gguf\n    context_window: 9\n"
    text += (
        "    input_usd_per_mtok: 1.0\n    output_usd_per_mtok: 1.0\n    quality: {default: [1.0]}\n"
    )
    cells = (
        Cell("general", "alpha", 0, (("q1", 5.0),), 0),
        Cell("general", "alpha", 1, (("q1", 6.0),), 0),
    )
    edited = apply_calibration(text, Calibration("j", 1, cells, ()), date=DATE, hardware=False)
    assert (
        "    context_window: 2048\n    quality:\n"
        f"      general: [5.0, 6.0]  # calibrated {DATE}: n=1, judge=j; r1 +1.00 (n=1), not shown\n"
        "  - id: other\n" in edited.text
    )
    assert parse_policy(edited.text, "x.yaml").model("alpha").quality == {"general": (5.0, 6.0)}


TECHNIQUES = Path(__file__).parent / "policies" / "techniques.yaml"
IDS = [f"q{i}" for i in range(10)]
DRAFT = tuple((q, 10.0 if q == "q0" else 0.0) for q in IDS)
# best_of at 8 turns five wrong drafts right (+5.00 [+1.23, +8.77]: shown); at 4 one (not shown).
BEST_OF = {
    4: tuple((q, 10.0 if q in ("q0", "q1") else 0.0) for q in IDS),
    8: tuple((q, 10.0 if q in ("q0", "q1", "q2", "q3", "q4", "q5") else 0.0) for q in IDS),
}


def technique_calibration(task: str = "coding", rounds: int = 0) -> Calibration:
    cells = tuple(Cell(task, "alpha", r, DRAFT, 0) for r in range(rounds + 1))
    techniques = (
        *(
            TechniqueCell(task, "alpha", "best_of", k, True, graded)
            for k, graded in BEST_OF.items()
        ),
        TechniqueCell(task, "alpha", "best_of", 8, False, DRAFT),  # the ablation: not written
        TechniqueCell(task, "alpha", "vote", 4, True, DRAFT),
        TechniqueCell(task, "alpha", "any", 8, False, BEST_OF[8]),
    )
    return Calibration(
        None, rounds, cells, (), techniques=techniques, task_suites={task: ("humaneval",)}
    )


def test_techniques_are_written_in_the_mapping_form_beside_the_kept_refine_list() -> None:
    original = TECHNIQUES.read_text()
    edited = apply_calibration(
        original, technique_calibration(), date=DATE, hardware=False, machine="m",
        significant_only=True,
    )  # fmt: skip
    refine = "[2.0, 2.0]  # calibrated 2026-12-01: n=3, suites=humaneval; r1 +0.00 (n=3), not shown"
    assert (
        "      coding:\n"
        f"        refine: {refine}\n"
        "        best_of: {4: 2.0, 8: 7.0}  # calibrated 2026-11-29: n=10, suites=humaneval, "
        "machine=m; draft 1.00, k4 +1.00 [-1.26, +3.26], not shown, k8 +5.00 [+1.23, +8.77]\n"
        "        vote: {4: 2.0}  # calibrated 2026-11-29: n=10, suites=humaneval, machine=m; "
        "draft 1.00, k4 +0.00 [+0.00, +0.00], not shown\n"
        "      math:\n" in edited.text
    )
    policy = parse_policy(edited.text, "calibrated.yaml").model("alpha")
    assert policy.quality_for("coding") == (2.0, 2.0)  # a run without rounds keeps the list
    assert policy.sampled_quality("coding") == (
        ("best_of", 4, 2.0),  # not shown: the draft's Q, so the planner keeps the draft
        ("best_of", 8, 7.0),  # the list's Q0 plus the measured gain
        ("vote", 4, 2.0),
    )
    assert edited.changes == (
        "alpha.quality.coding.best_of: (none) -> {4: 2.0, 8: 7.0}",
        "alpha.quality.coding.vote: (none) -> {4: 2.0}",
    )
    marked = {("alpha", "general"), ("alpha", "coding"), ("alpha", "coding.best_of"),
              ("alpha", "coding.vote")}  # fmt: skip
    assert calibrated_lists(edited.text) == calibrated_quality(edited.text) == marked
    for line in original.splitlines():
        if "coding" not in line:
            assert line in edited.text, line


def test_gains_mean_writes_every_measured_gain() -> None:
    edited = apply_calibration(
        TECHNIQUES.read_text(), technique_calibration(), date=DATE, hardware=False
    )
    policy = parse_policy(edited.text, "calibrated.yaml").model("alpha")
    assert policy.sampled_quality("coding")[0] == ("best_of", 4, 3.0)


def test_a_refine_run_keeps_a_mapping_entrys_technique_tables() -> None:
    cells = (
        Cell("math", "alpha", 0, (("q1", 0.0), ("q2", 10.0)), 0),
        Cell("math", "alpha", 1, (("q1", 0.0), ("q2", 10.0)), 0),
    )
    edited = apply_calibration(
        TECHNIQUES.read_text(), Calibration(None, 1, cells, ()), date=DATE, hardware=False
    )
    assert edited.text.endswith(
        "      math:\n"
        "        refine: [5.0, 5.0]  # calibrated 2026-11-29: n=2; r1 +0.00 [+0.00, +0.00], "
        "not shown\n"
        "        vote: {4: 3.0}  # a guess\n"
    )
    assert edited.changes == ("alpha.quality.math.refine: [1.0, 1.0] -> [5.0, 5.0]",)


def test_a_run_with_rounds_rewrites_the_refine_list_and_anchors_on_it() -> None:
    edited = apply_calibration(
        TECHNIQUES.read_text(), technique_calibration(rounds=1), date=DATE, hardware=False,
        significant_only=True,
    )  # fmt: skip
    policy = parse_policy(edited.text, "calibrated.yaml").model("alpha")
    assert policy.quality_for("coding") == (1.0, 1.0)
    assert dict((k, q) for _, k, q in policy.sampled_quality("coding")[:2]) == {4: 1.0, 8: 6.0}
    assert "        refine: [1.0, 1.0]  # calibrated 2026-11-29: n=10, suites=humaneval; r1" in (
        edited.text
    )


def test_a_new_task_in_a_flow_quality_mapping_is_written_as_a_block() -> None:
    edited = apply_calibration(
        POLICY.read_text(), technique_calibration("general"), date=DATE, hardware=False
    )
    assert (
        "    quality:\n"
        "      default: [3.0, 3.2, 3.3]\n"
        "      creative: [4.0, 4.5]\n"
        "      general:\n"
        "        refine: [1.0]  # calibrated 2026-11-29: n=10, suites=humaneval\n"
        "        best_of: {4: 2.0, 8: 6.0}  # calibrated 2026-11-29: n=10, suites=humaneval; "
        in edited.text
    )
    parse_policy(edited.text, "calibrated.yaml")
