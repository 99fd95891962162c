"""``perfics calibrate`` with verifiable graders on the real bundled SmolLM2, no judge.

Two factual questions, graded by their accepted answers, with 0..1 rounds under the bare
``all`` acceptance rule. SmolLM2's drafts name the right answer and its rewrites are talk
about the answer (recorded in tests/fixtures/rewrites.jsonl), so the measured gain is
negative: the calibrated policy must pass ``perfics policy check`` and ``perfics route`` must
then plan 0 rounds where the guessed figures planned 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
POLICY = HERE / "policies" / "smollm2-verifiable.yaml"
QUESTIONS = HERE / "questions-facts.jsonl"


def route(policy: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["route", "--policy", str(policy), "--task", "general", "--json"]) == 0
    plan: dict[str, object] = json.loads(capsys.readouterr().out)
    return plan


@pytest.mark.model
@pytest.mark.slow
def test_verifiable_calibration_turns_a_harmful_round_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert route(POLICY, capsys)["rounds"] == 1  # the guess: refinement doubles quality
    out, results = tmp_path / "calibrated.yaml", tmp_path / "results.json"
    args = [
        sys.executable, "-m", "proxy.cli", "calibrate", "--policy", str(POLICY),
        "--questions", str(QUESTIONS), "--rounds", "1", "--run-dir", str(tmp_path / "run"),
        "--results", str(results), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verifiable graders" in done.stderr
    assert "judge calls 0" in done.stdout

    figures = json.loads(results.read_text())
    cells = {c["rounds"]: c for c in figures["cells"]}
    assert cells[0]["n"] == cells[1]["n"] == 2
    assert cells[1]["mean"] < cells[0]["mean"], f"premise: rewrites lost answers: {cells}"
    assert {row["rule"] for row in figures["ablation"]} == {"all", "answers", "likelier"}

    written = out.read_text()
    assert "# calibrated " in written
    assert "n=2, suites=questions" in written
    assert main(["policy", "check", str(out)]) == 0
    assert route(out, capsys)["rounds"] == 0
