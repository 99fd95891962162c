"""The held-out quality check's questions (``benchmarks/quality_check/questions.jsonl``): what
the coding tasks state, read without a server or a model."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.selection.examples import extract_examples


def test_every_held_out_coding_task_states_examples_and_has_a_check() -> None:
    """The set's coding tasks are what best_of is measured on: each prompt names its function
    and states examples the request's checks find, and each hidden test defines ``check``."""
    path = Path(__file__).parents[1] / "benchmarks" / "quality_check" / "questions.jsonl"
    questions = map(json.loads, path.read_text().splitlines())
    coding = [q for q in questions if q["category"] == "coding"]
    assert len(coding) == 166
    for question in coding:
        prompt, grader = question["turns"][0], question["grader"]
        assert grader["entry_point"] in prompt, question["question_id"]
        assert extract_examples([prompt]).count >= 1, question["question_id"]
        namespace: dict[str, object] = {}
        exec(compile(grader["tests"], question["question_id"], "exec"), namespace)
        assert callable(namespace["check"]), question["question_id"]
