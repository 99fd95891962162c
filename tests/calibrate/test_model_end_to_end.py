"""``perfics calibrate`` end to end on the real bundled SmolLM2: it answers two questions with
0..1 refinement rounds and, for want of another local model, judges itself.

SmolLM2-135M cannot follow the grading format (it never writes ``[[N]]``), so the first run
must report its grades as failures and write nothing. The run directory is then graded by
hand, as docs/calibration.md describes, and ``--resume`` finishes without asking any model
again: the policy it writes passes ``perfics policy check`` and ``perfics route`` plans with
the new figures.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
POLICY = HERE / "policies" / "smollm2-judge.yaml"
QUESTIONS = HERE / "questions-two.jsonl"


def perfics(args: list[str]) -> tuple[int, str]:
    """``perfics ARGS`` in a child process (calibrate configures process-wide logging)."""
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


@pytest.mark.model
def test_calibrate_resume_check_and_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "calibrated.yaml"
    args = [
        "calibrate", "--policy", str(POLICY), "--questions", str(QUESTIONS),
        "--judge", "smollm2-135m", "--models", "smollm2-135m", "--rounds", "1",
        "--judge-max-tokens", "24", "--judge-retries", "0",
        "--run-dir", str(run_dir), "--out", str(out),
    ]  # fmt: skip
    first, stdout = perfics(args)
    assert "task     model         rounds  n  mean  95% CI" in stdout
    assert "model calls " in stdout
    assert "model calls 0," not in stdout
    grades = sorted((run_dir / "grades").glob("*.json"))
    assert 2 <= len(grades) <= 4  # one per distinct answer text
    unparsed = [g for g in grades if json.loads(g.read_text())["score"] is None]
    if unparsed:
        assert "failures:" in stdout
        assert "no [[N]] rating in 1 replies" in stdout
    if len(unparsed) == len(grades):
        assert first == 1
        assert not out.exists()

    for path in grades:  # grade by hand: every answer gets 6
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "score": 6.0, "error": None}))
    resumed, stdout = perfics([*args, "--resume"])
    assert resumed == 0, stdout
    assert "model calls 0, samples 0, judge calls 0" in stdout
    assert "calibrated" in out.read_text()

    assert main(["policy", "check", str(out)]) == 0
    capsys.readouterr()
    assert main(["route", "--policy", str(out), "--task", "math", "--json"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert (chosen["model"], chosen["rounds"]) == ("smollm2-135m", 0)
    # Q_0 = Q_1 = 6.0 now (the guess was 3.0, 3.4): the score is 0.6 less the cost term
    expected = 0.6 - 0.05 * math.log10(chosen["estimated_cost_usd"] / 0.001)
    assert chosen["score"] == pytest.approx(expected)
