"""The command line around the runner: argument checks that fail before any model loads,
the proposed diff, in-place writing, refusal of an invalid result, and ``perfics report``."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from proxy.calibrate.cli import propose_policy
from proxy.calibrate.results import write_results
from proxy.calibrate.scores import Calibration, Cell
from proxy.cli import main

from .conftest import POLICY

CALIBRATION = Calibration(
    "judge",
    1,
    (
        Cell("general", "alpha", 0, (("q1", 4.0),), 0),
        Cell("general", "alpha", 1, (("q1", 5.0),), 0),
    ),
    (),
)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--judge", "nobody"], "--judge: 'nobody' is not a model"),
        (["--judge", "judge", "--models", "alpha,ghost"], "--models: unknown ['ghost']"),
        (["--judge", "judge", "--questions", "missing.jsonl"], "missing.jsonl"),
        (["--samples", "4,1"], "sample counts must be 2 to 16, got 1"),
        (["--samples", "17"], "sample counts must be 2 to 16, got 17"),
        (["--techniques", "best_of,refine"], "expected best_of, vote or none"),
        (["--suite", "math", "--tasks", "poetry"], "--tasks: poetry not a task"),
        (["--suite", "math", "--tasks", "creative"], "--tasks: no question of the suites"),
    ],
)
def test_bad_arguments_exit_2_before_loading_models(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate", "--policy", str(POLICY), *extra]) == 2
    assert message in capsys.readouterr().err


def test_invalid_policy_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n")
    assert main(["calibrate", "--policy", str(bad), "--judge", "x"]) == 2
    assert "bad.yaml:" in capsys.readouterr().err


def args(policy: Path, **flags: object) -> argparse.Namespace:
    values = {
        "policy": str(policy),
        "out": None,
        "write": False,
        "write_hardware": False,
        "gains": "mean",
    }
    return argparse.Namespace(**{**values, **flags})


def test_without_out_or_write_the_diff_is_printed(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.read_text())
    out, err = io.StringIO(), io.StringIO()
    assert propose_policy(args(policy), CALIBRATION, out, err) == 0
    assert "+      general: [4.0, 5.0]  # calibrated" in out.getvalue()
    assert policy.read_text() == POLICY.read_text()


def test_write_rewrites_in_place_and_out_writes_elsewhere(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.read_text())
    out, err = io.StringIO(), io.StringIO()
    elsewhere = tmp_path / "new.yaml"
    assert propose_policy(args(policy, out=str(elsewhere)), CALIBRATION, out, err) == 0
    assert policy.read_text() == POLICY.read_text()
    assert "general: [4.0, 5.0]" in elsewhere.read_text()
    assert propose_policy(args(policy, write=True), CALIBRATION, out, err) == 0
    assert policy.read_text() == elsewhere.read_text()


def test_an_invalid_result_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.read_text())
    # a quality list for a task the policy does not declare
    wrong = Calibration("judge", 0, (Cell("poetry", "alpha", 0, (("q1", 4.0),), 0),), ())
    out, err = io.StringIO(), io.StringIO()
    assert propose_policy(args(policy, write=True), wrong, out, err) == 2
    assert "refusing to write" in err.getvalue()
    assert "poetry" in err.getvalue()
    assert policy.read_text() == POLICY.read_text()


@pytest.mark.slow
def test_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--policy", str(POLICY), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == [
        "quality_vs_cost.png",
        "refinement_gain.png",
        "report.md",
    ]


def test_report_reads_several_results_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs (one model's general questions, another's) give one report with both."""
    runs = []
    for model, draft, refined in (("alpha", 0.0, 10.0), ("beta", 10.0, 10.0)):
        cells = tuple(
            Cell("general", model, r, tuple((f"q{i}", score) for i in range(12)), 0)
            for r, score in ((0, draft), (1, refined))
        )
        path = tmp_path / f"{model}.json"
        write_results(path, Calibration(None, 1, cells, ()), (), wall_s=1.0)
        runs += ["--calibration", str(path)]
    out = tmp_path / "report"
    assert main(["report", "--policy", str(POLICY), "--out", str(out), *runs]) == 0
    capsys.readouterr()
    report = (out / "report.md").read_text()
    assert "general, alpha, 1 round: +10.00 [+10.00, +10.00] points" in report
    assert "general, beta, 1 round: +0.00" in report
