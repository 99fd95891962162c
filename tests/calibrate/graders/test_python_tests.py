"""The python_tests grader: which code is taken from an answer, how the program is assembled,
and how a run becomes a verdict."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.calibrate.graders import Grader, GraderError, parse_grader
from proxy.calibrate.graders.python_tests import build_program
from proxy.pycode.extract import extract_code

PROMPT = '''from typing import List


def running_sum(numbers: List[int]) -> List[int]:
    """Running totals: [1, 2, 3] -> [1, 3, 6]."""
'''
TESTS = """
def check(candidate):
    assert candidate([1, 2, 3]) == [1, 3, 6]
    assert candidate([]) == []
    assert candidate([-1, 1]) == [-1, 0]
"""
RIGHT = """def running_sum(numbers: List[int]) -> List[int]:
    total, out = 0, []
    for n in numbers:
        total += n
        out.append(total)
    return out
"""
WRONG = RIGHT.replace("total += n", "total = n")


def grader(**changes: Any) -> Grader:
    spec = {"type": "python_tests", "prompt": PROMPT, "tests": TESTS, "entry_point": "running_sum"}
    built = parse_grader(spec | changes)
    assert built is not None
    assert built.kind == "python_tests"
    return built


def fenced(code: str, language: str = "python") -> str:
    return f"```{language}\n{code}```"


@pytest.mark.parametrize(
    "answer",
    [
        fenced(RIGHT),
        "Here you go:\n\n" + fenced(RIGHT) + "\n\nIt runs in O(n).",
        fenced(RIGHT, language=""),
        fenced(RIGHT, language="py"),
        "Example:\n" + fenced("print(running_sum([1]))\n") + "\nCode:\n" + fenced(RIGHT),
        RIGHT,
        "```python\n" + RIGHT,  # cut off before the closing fence
        fenced(RIGHT.split(":\n", 1)[1]),  # only the indented body
        fenced(RIGHT + "\nif __name__ == '__main__':\n    print(running_sum([int(input())]))\n"),
        fenced(
            "import itertools\n\ndef running_sum(numbers):\n"
            "    return list(itertools.accumulate(numbers))\n"
        ),
    ],
)
def test_right_answers_pass(answer: str) -> None:
    verdict = grader().check(answer)
    assert (verdict.passed, verdict.detail) == (True, "passed")
    assert verdict.score == 10.0


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (fenced(WRONG), "AssertionError"),
        (fenced(RIGHT.replace("return out", "return outs")), "NameError: name 'outs' is not"),
        (fenced("def running_sum(numbers:\n    pass\n"), "SyntaxError: "),
        ("The function sums things up as it goes.", "SyntaxError: "),
        ("", "no code in the answer"),
        (fenced("   \n"), "no code in the answer"),
        (fenced(PROMPT), "AssertionError"),  # the stub alone returns None
        (fenced("import sys\nsys.exit(0)\n"), "exited before the tests finished"),
        (fenced("import os\nos._exit(0)\n"), "exited before the tests finished"),
        (fenced("import os\nos.system('echo hi')\n"), "PermissionError: sandbox: os.system"),
        (fenced("x = bytearray(10**10)\n"), "killed: memory"),
    ],
)
def test_wrong_answers_fail_with_a_reason(answer: str, detail: str) -> None:
    verdict = grader().check(answer)
    assert not verdict.passed
    assert verdict.detail.startswith(detail)
    assert verdict.score == 0.0


@pytest.mark.slow
def test_an_answer_that_never_returns_times_out() -> None:
    looping = fenced("def running_sum(numbers):\n    while True:\n        pass\n")
    verdict = grader(timeout_s=2).check(looping)
    assert (verdict.passed, verdict.detail) == (False, "timed out after 2 s")


def test_the_prompt_still_provides_imports_and_helpers() -> None:
    prompt = "import math\n\ndef helper(x):\n    return x * 2\n\n\ndef f(x):\n    '''Doubled.'''\n"
    tests = "def check(candidate):\n    assert candidate(2) == 4 and math.pi > 3\n"
    built = parse_grader(
        {"type": "python_tests", "prompt": prompt, "tests": tests, "entry_point": "f"}
    )
    assert built is not None
    assert built.check(fenced("def f(x):\n    return helper(x)\n")).passed
    assert built.check(fenced("    return helper(x)\n")).passed
    assert not built.check(fenced("def f(x):\n    return helper(x) + 1\n")).passed


def test_extract_code_prefers_the_block_that_defines_the_entry_point() -> None:
    answer = "```bash\npip install x\n```\n```python\nf(1)\n```\n```python\ndef f(x): ...\n```"
    assert extract_code(answer, "f") == "def f(x): ...\n"
    assert extract_code(answer, "g") == "f(1)\n"
    assert extract_code("no fences at all", "f") == "no fences at all"
    assert extract_code("```text\nhello\n```", "f") == "```text\nhello\n```"


def test_build_program_joins_prompt_code_and_tests() -> None:
    body = "    return 1\n"
    assert build_program("def f():\n    '''Doc.'''\n", body, "T", "f") == (
        "__name__ = 'candidate'\ndef f():\n    '''Doc.'''\n    return 1\n\n\nT\n\ncheck(f)\n"
    )
    assert build_program("import os", "def f():\n    return 1\n", "T", "f") == (
        "__name__ = 'candidate'\nimport os\n\n\ndef f():\n    return 1\n\n\nT\n\ncheck(f)\n"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tests": ""}, "grader.tests: String should have at least 1 character"),
        ({"entry_point": "running sum"}, "grader.entry_point: Value error, must be a Python"),
        ({"entry_point": "class"}, "grader.entry_point: Value error, must be a Python"),
        ({"timeout_s": 0}, "grader.timeout_s: Input should be greater than 0"),
        ({"timeout_s": "10"}, "grader.timeout_s: Input should be a valid number"),
        ({"prompt": None}, "grader.prompt: Input should be a valid string"),
        ({"memory_mb": 10}, "grader.memory_mb: Extra inputs are not permitted"),
    ],
)
def test_bad_specs_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(GraderError) as raised:
        grader(**changes)
    assert str(raised.value).startswith(message)


def test_missing_fields_are_named() -> None:
    with pytest.raises(GraderError, match=r"^grader\.tests: Field required"):
        parse_grader({"type": "python_tests", "entry_point": "f"})
    with pytest.raises(GraderError, match=r"^grader\.entry_point: Field required"):
        parse_grader({"type": "python_tests", "tests": "x"})
