"""The HumanEval suite: all problems load from the installed package's data file, and each
problem's canonical solution passes its own tests through the grader."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from proxy.calibrate.graders import humaneval, parse_grader
from proxy.calibrate.graders.humaneval import SuiteError, data_path, load_humaneval


@pytest.fixture(scope="module")
def problems() -> dict[str, dict[str, Any]]:
    with gzip.open(data_path(), "rt", encoding="utf-8") as lines:
        return {problem["task_id"]: problem for problem in map(json.loads, lines)}


def test_all_164_problems_load_as_question_lines() -> None:
    questions = load_humaneval()
    assert len(questions) == 164
    assert [q["question_id"] for q in questions] == [f"HumanEval/{n}" for n in range(164)]
    first = questions[0]
    assert first["category"] == "coding"
    assert set(first) == {"question_id", "category", "turns", "grader"}
    assert first["grader"]["entry_point"] == "has_close_elements"
    (turn,) = first["turns"]
    assert turn.startswith("Complete the following Python function.")
    assert turn.endswith(f"```python\n{first['grader']['prompt']}```")


def test_every_grader_spec_is_valid() -> None:
    graders = [parse_grader(question["grader"]) for question in load_humaneval()]
    assert all(grader is not None and grader.kind == "python_tests" for grader in graders)


@pytest.mark.parametrize("task", ["HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/162"])
def test_canonical_solutions_pass_and_stubs_fail(
    problems: dict[str, dict[str, Any]], task: str
) -> None:
    questions = {q["question_id"]: q for q in load_humaneval()}
    grader = parse_grader(questions[task]["grader"])
    assert grader is not None
    problem = problems[task]
    solved = grader.check(f"```python\n{problem['prompt']}{problem['canonical_solution']}```")
    assert (solved.passed, solved.detail) == (True, "passed")
    stub = grader.check(f"```python\n{problem['prompt']}    pass\n```")
    assert not stub.passed
    assert stub.detail.startswith(("AssertionError", "TypeError"))


def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(humaneval, "DISTRIBUTION", "perfics-no-such-distribution")
    with pytest.raises(SuiteError, match="needs the 'perfics-no-such-distribution' package"):
        load_humaneval()
