"""The held-out quality check (``python -m benchmarks.quality_check``) against a real server
whose scripted model answers in a known order: the draft arm declares neither rounds nor
samples, ``--temperature unset`` sends none (the model's default applies), and the plan's
technique, the rule that chose and the paired difference are reported per category."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.quality_check.__main__ import main
from proxy.backends.scripted import ScriptedBackend
from tests.conftest import InProcessServer

pytestmark = pytest.mark.heavy  # serves scripted models over HTTP (uvicorn in this process)

POLICY = """\
version: 1
default_task: general
selection: {temperature: 0.7}
tasks:
  general: {max_rounds: 0, answer_tokens: 100}
  coding: {max_rounds: 0, max_samples: 4, answer_tokens: 100, keywords: [python]}
aliases:
  gpt-4o: {}
models:
  - id: alpha
    backend: openai
    model: m
    api_base: http://127.0.0.1:9/v1
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    defaults: {temperature: 0.2}
    quality:
      general: [5.0]
      coding: {refine: [1.0], best_of: {4: 3.0}}
"""
QUESTIONS = [
    {
        "question_id": "c1",
        "category": "coding",
        "turns": ["Write a Python function add(a, b).\n\n>>> add(2, 3)\n5"],
        "grader": {
            "type": "python_tests",
            "entry_point": "add",
            "tests": "def check(candidate):\n    assert candidate(-1, 1) == 0\n",
        },
    },
    {
        "question_id": "g1",
        "category": "general",
        "turns": ["Name the largest planet."],
        "grader": {"type": "exact", "accepted": ["Jupiter"]},
    },
]


def code(body: str) -> str:
    return f"```python\ndef add(a, b):\n    return {body}\n```"


def test_plan_against_the_draft_alone_with_no_temperature_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, questions, out = tmp_path / "p.yaml", tmp_path / "q.jsonl", tmp_path / "r.json"
    policy.write_text(POLICY)
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    # c1 (plan first): a wrong draft, then samples; the draft arm's draft. g1 (draft first).
    replies = [code("a - b"), code("a * b"), code("a + b"), code("0"), code("a - b")]
    alpha = ScriptedBackend("alpha", [*replies, "Jupiter", "Jupiter."])
    server = InProcessServer(policy, {"alpha": alpha})
    try:
        status = main(
            [
                "--policy", str(policy), "--base-url", f"{server.base_url}/v1",
                "--questions", str(questions), "--temperature", "unset", "--out", str(out),
            ]
        )  # fmt: skip
    finally:
        server.stop()
    assert status == 0
    # The client sent no temperature: drafts at the model's default, samples at selection's.
    assert [c.params.temperature for c in alpha.calls] == [0.2, 0.7, 0.7, 0.7, 0.2, 0.2, 0.2]
    assert [c.params.seed for c in alpha.calls] == [0, 1, 2, 3, 0, 0, 0]
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["plan"] | {"latency_s": 0} == {
        "passed": True,
        "latency_s": 0,
        "technique": "best_of",
        "rounds": 0,
        "rounds_planned": 0,
        "samples_planned": 4,
        "selected_by": "checks",
        "task": "coding",
        "model": "alpha",
    }
    assert (rows[0]["draft"]["technique"], rows[0]["draft"]["passed"]) == ("draft", False)
    summary = json.loads(out.read_text())["summary"]
    assert summary["coding"]["plan_techniques"] == {"best_of 4": 1}
    assert (summary["all"]["difference_pct"], summary["all"]["better"]) == (50.0, 1)
    printed = capsys.readouterr().out
    assert "temperature unset (none sent), seed 0" in printed
    coding = next(line for line in printed.splitlines() if line.startswith("coding "))
    assert re.split(r"\s{2,}", coding)[:4] == [
        "coding",
        "1",
        "100.0 [20.7, 100.0]",
        "0.0 [0.0, 79.3]",
    ]


def test_one_arm_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy, questions = tmp_path / "p.yaml", tmp_path / "q.jsonl"
    policy.write_text(POLICY)
    questions.write_text(json.dumps(QUESTIONS[1]) + "\n")
    alpha = ScriptedBackend("alpha", ["Saturn"])
    server = InProcessServer(policy, {"alpha": alpha})
    try:
        args = ["--policy", str(policy), "--base-url", f"{server.base_url}/v1"]
        assert main([*args, "--questions", str(questions), "--arms", "draft"]) == 0
    finally:
        server.stop()
    assert [c.params.temperature for c in alpha.calls] == [0.0]
    printed = capsys.readouterr().out
    assert "draft acc %" in printed
    assert "plan acc %" not in printed
