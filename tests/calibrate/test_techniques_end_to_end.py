"""``perfics calibrate --samples`` on the real bundled SmolLM2: two small coding questions whose
prompts state their examples, best_of and vote at 2 and 4 answers, no rounds.

What a 135M model answers is not scripted, so the checks are the invariants: every variant
graded on both questions, each decided by a rule its technique has, no selection better than
the oracle over the same answers, samples made once and reused by ``--resume`` (no model call
the second time), and a calibrated policy in the mapping form that loads and plans.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main
from routing.policy_loader import load_policy

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
POLICY = HERE / "policies" / "smollm2-techniques.yaml"
QUESTIONS = HERE / "questions-code.jsonl"
RULES = {"best_of": {"checks", "likelihood", "draft"}, "vote": {"agreement", "draft"}}


def calibrate(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable, "-m", "proxy.cli", "calibrate", "--policy", str(POLICY),
        "--questions", str(QUESTIONS), "--rounds", "0", "--samples", "2,4",
        "--run-dir", str(tmp_path / "run"), "--results", str(tmp_path / "results.json"),
        "--out", str(tmp_path / "calibrated.yaml"), *extra,
    ]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.model
@pytest.mark.slow
def test_techniques_calibrated_on_the_real_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = calibrate(tmp_path)
    assert "samples 6," in first.stdout  # three per question, made once for every variant
    figures = json.loads((tmp_path / "results.json").read_text())
    cells = {(c["technique"], c["k"], c["checks"]): c for c in figures["techniques"]}
    assert set(cells) == {
        *(("best_of", k, True) for k in (2, 4)),
        *(("best_of", k, False) for k in (2, 4)),
        *(("vote", k, True) for k in (2, 4)),
        *(("any", k, False) for k in (2, 4)),
    }
    for (technique, k, _), cell in cells.items():
        assert cell["n"] == 2
        if technique != "any":
            assert set(cell["selected_by"].values()) <= RULES[technique]
            for qid, grade in cell["grades"].items():
                assert grade <= cells[("any", k, False)]["grades"][qid]
    assert set(cells[("best_of", 4, False)]["selected_by"].values()) == {"draft"}

    again = calibrate(tmp_path, "--resume")
    assert "model calls 0, samples 0," in again.stdout
    assert (
        json.loads((tmp_path / "results.json").read_text())["techniques"] == (figures["techniques"])
    )

    written = (tmp_path / "calibrated.yaml").read_text()
    assert "      coding:\n        refine: [1.0]  # a guess\n        best_of: {2: " in written
    policy = load_policy(tmp_path / "calibrated.yaml")
    sizes = [(t, k) for t, k, _ in policy.model("smollm2-135m").sampled_quality("coding")]
    assert sizes == [("best_of", 2), ("best_of", 4), ("vote", 2), ("vote", 4)]
    capsys.readouterr()
    assert main(["route", "--policy", str(tmp_path / "calibrated.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "smollm2-135m"
