"""A request's own checks run against candidate answers: JSON formats, forced tool calls, and the
prompt's code examples run in the graders' sandbox (real subprocesses), hostile code included."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from typing import Any

import pytest

from proxy.backends.base import Completion, SamplingParams
from proxy.calibrate.graders.humaneval import data_path
from proxy.results import Usage
from proxy.selection.checks import CheckResult, RequestChecks

USAGE = Usage()


def checks(text: str = "", params: SamplingParams | None = None, **options: Any) -> RequestChecks:
    messages = [{"role": "user", "content": text}]
    return RequestChecks.build(messages, params or SamplingParams(), **options)


def fenced(code: str) -> str:
    return f"Here you go:\n\n```python\n{code}\n```\nHope it helps."


async def test_a_request_with_nothing_to_check_says_so() -> None:
    plain = checks("What is the capital of France?")
    assert plain.empty
    assert plain.kinds == ()
    assert await plain.run("Paris") == CheckResult(False, 0, 0, "the request carries no check")
    # Tools the model may or may not call carry no check either.
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert checks("hi", SamplingParams(tools=tools, tool_choice="auto")).empty


async def test_json_object() -> None:
    request = checks("Describe a cat.", SamplingParams(response_format={"type": "json_object"}))
    assert request.kinds == ("response_format",)
    assert await request.run('{"name": "Tom"}') == CheckResult(True, 1, 0, "passed")
    assert (await request.run("Sure! {}")).reason == "not JSON"
    assert (await request.run("[1, 2]")).reason == "not a JSON object"


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


async def test_json_schema() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    request = checks("A person.", SamplingParams(response_format=fmt))
    assert (await request.run('{"name": "Ada", "age": 36}')).passed
    missing = await request.run('{"name": "Ada"}')
    assert (missing.passed, missing.reason) == (False, "fails the schema (required)")
    assert (await request.run('{"name": "Ada", "age": -1}')).reason == "fails the schema (minimum)"
    assert (await request.run('{"name": "Ada", "age": "36"}')).reason == "fails the schema (type)"
    assert not (await request.run("not json")).passed


async def test_a_schema_that_is_not_json_schema_is_checked_for_parsing_only() -> None:
    fmt = {"type": "json_schema", "json_schema": {"schema": {"type": "no such type"}}}
    request = checks("x", SamplingParams(response_format=fmt))
    assert (await request.run('{"a": 1}')).passed
    assert not (await request.run("{")).passed


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}}


def call(name: str, arguments: str) -> Completion:
    tool_call = {"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}
    return Completion("", "tool_calls", USAGE, tool_calls=(tool_call,))


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "weather"}}]
)
async def test_a_forced_tool_call(choice: Any) -> None:
    params = SamplingParams(
        tools=[WEATHER, TIME], tool_choice=choice, response_format={"type": "json_object"}
    )
    request = checks("Weather in Paris? ```python\nassert f(1) == 2\n```", params)
    # The answer is the call: the response format and the prompt's code do not apply.
    assert request.kinds == ("tool_call",)
    assert await request.run(call("weather", '{"city": "Paris"}')) == CheckResult(
        True, 1, 0, "passed"
    )
    wrong = await request.run(call("weather", '{"town": "Paris"}'))
    assert (wrong.passed, wrong.reason) == (False, "tool arguments: fails the schema (required)")
    assert (await request.run(call("weather", "{"))).reason == "tool arguments: not JSON"
    assert (await request.run(call("weather", "[]"))).reason == "tool arguments: not a JSON object"
    assert (await request.run("It is sunny.")).reason == "no tool call"
    unknown = await request.run(call("rain", "{}"))
    assert unknown.reason == "a call of a function the request does not allow"
    named = (await request.run(call("time", "{}"))).passed
    assert named is (choice == "required")


# Code examples: one prompt per form, a right and a wrong answer for each.
FORMS = {
    "doctest": (
        'def add(a, b):\n    """\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n    0\n    """\n',
        "def add(a, b):\n    return a + b",
        "def add(a, b):\n    return a * b",
    ),
    "assert": (
        "Write add(a, b).\n\nassert add(2, 3) == 5\nassert add(0, 0) == 0",
        "def add(a, b):\n    return a + b",
        "def add(a, b):\n    return a - b + 0 * 5",
    ),
    "equals": (
        "Write double(n).\nExamples:\n  double(2) == 4\n  double(-3) == -6",
        "def double(n):\n    return 2 * n",
        "def double(n):\n    return n + 2",
    ),
    "arrow": (
        "Write shout(s).\n  shout('hi') -> 'HI'\n  shout('a b') => 'A B'\n  shout('') ➞ ''",
        "def shout(s):\n    return s.upper()",
        "def shout(s):\n    return s.title()",
    ),
    "input-output call": (
        "Write a Python function two_sum(nums, target).\n\n"
        "Input: nums = [2,7,11,15], target = 9\nOutput: [0,1]\n\n"
        "Input: nums = [3,2,4], target = 6\nOutput: [1,2]",
        "def two_sum(nums, target):\n    seen = {}\n    for i, n in enumerate(nums):\n"
        "        if target - n in seen:\n            return [seen[target - n], i]\n"
        "        seen[n] = i",
        "def two_sum(nums, target):\n    return [0, 1]",
    ),
    "input-output program": (
        "Read n, then n numbers, and print their sum.\n\nInput:\n3\n1 2 3\nOutput:\n6\n\n"
        "Input:\n2\n10 -4\nOutput:\n6",
        "n = int(input())\nprint(sum(map(int, input().split()[:n])))",
        "import sys\nprint(len(sys.stdin.read().split()))",
    ),
}


@pytest.mark.parametrize("form", FORMS)
async def test_code_examples_of_each_form(form: str) -> None:
    prompt, right, wrong = FORMS[form]
    request = checks(prompt)
    assert request.kinds == ("code",)
    passed = await request.run(fenced(right))
    assert passed == CheckResult(True, 2 if form != "arrow" else 3, 0, passed.reason), passed
    failed = await request.run(fenced(wrong))
    assert not failed.passed, failed
    assert failed.failed >= 1, failed
    assert failed.reason.startswith("code: ")


async def test_the_answer_may_be_bare_code_and_a_cut_off_fence_still_counts() -> None:
    request = checks(FORMS["equals"][0])
    assert (await request.run("def double(n):\n    return n * 2\n")).passed
    assert (await request.run("```python\ndef double(n):\n    return n * 2\n")).passed
    unparsable = await request.run("The answer is to double it.")
    assert unparsable == CheckResult(False, 2, 2, "code: the code does not parse")


HOSTILE = {
    "os.system": "import os\ndef double(n):\n    os.system('true')\n    return 2 * n",
    "subprocess": "import subprocess\ndef double(n):\n"
    "    return int(subprocess.check_output(['echo', str(2 * n)]))",
    "socket": "import socket\ndef double(n):\n    socket.create_connection(('127.0.0.1', 9))\n"
    "    return 2 * n",
    "write": "def double(n):\n    open('/tmp/perfics-hostile-write', 'w').write('x')\n"
    "    return 2 * n",
    "import-time write": "open('/tmp/perfics-hostile-write', 'w').write('x')\n"
    "def double(n):\n    return 2 * n",
}


@pytest.mark.parametrize("kind", HOSTILE)
async def test_hostile_code_is_refused_and_fails(kind: str) -> None:
    request = checks(FORMS["equals"][0])
    result = await request.run(fenced(HOSTILE[kind]))
    assert result == CheckResult(False, 2, 2, "code: 2 of 2 examples failed"), result


@pytest.mark.slow
async def test_an_endless_loop_is_stopped_by_the_run_timeout() -> None:
    request = checks(FORMS["equals"][0] + "\n  double(0) == 0", run_timeout_s=1.0)
    loop = (
        "def double(n):\n    if n == -3:\n        while True:\n            pass\n    return 2 * n"
    )
    result = await request.run(fenced(loop))
    # The examples before the loop passed; the one looping and the one after it did not run.
    assert result == CheckResult(False, 3, 2, "code: 2 of 3 examples failed (timed out)")


async def test_a_memory_hog_fails() -> None:
    request = checks(FORMS["equals"][0])
    hog = "def double(n):\n    x = bytearray(4 * 1024 ** 3)\n    return 2 * n"
    result = await request.run(fenced(hog))
    assert not result.passed
    assert result.failed == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_request_time_limit_counts_from_the_first_run() -> None:
    clock = FakeClock()
    request = checks(FORMS["equals"][0], time_limit_s=10.0, clock=clock)
    clock.now = 500.0  # building the checks starts nothing
    assert (await request.run(fenced(FORMS["equals"][1]))).passed
    clock.now = 509.0
    assert (await request.run(fenced(FORMS["equals"][1]))).passed
    clock.now = 510.0
    spent = await request.run(fenced(FORMS["equals"][1]))
    assert spent == CheckResult(False, 2, 2, "the time for running code is spent")


async def test_code_checks_can_be_switched_off() -> None:
    assert checks(FORMS["equals"][0], code=False).empty


async def test_examples_come_from_the_system_and_the_last_user_message() -> None:
    messages: Sequence[dict[str, Any]] = [
        {"role": "system", "content": "Always check: double(1) == 2"},
        {"role": "user", "content": "Old question: triple(1) == 3"},
        {"role": "assistant", "content": "def triple(n): return 3 * n"},
        {"role": "user", "content": [{"type": "text", "text": "Now double(5) == 10"}]},
    ]
    request = RequestChecks.build(messages, SamplingParams())
    assert [e.source for e in request.examples.examples] == [
        "(double(1)) == (2)\n",
        "(double(5)) == (10)\n",
    ]
    assert (await request.run(fenced("def double(n):\n    return 2 * n"))).passed


async def test_reasons_never_quote_the_prompt_or_the_code() -> None:
    request = checks(FORMS["equals"][0] + "\n# SECRET-PROMPT")
    answer = fenced("def double(n):\n    raise ValueError('SECRET-CODE')")
    result = await request.run(answer)
    assert not result.passed
    assert "SECRET" not in result.reason
    assert "double" not in result.reason


# A dozen HumanEval problems, as perfics's calibration asks them: the canonical solution passes
# the examples its prompt states, and an answer that returns the wrong thing does not.
HUMANEVAL = (0, 2, 13, 23, 53, 66, 72, 96, 102, 121, 136, 155)


def humaneval() -> dict[int, dict[str, Any]]:
    with gzip.open(data_path(), "rt", encoding="utf-8") as lines:
        problems = [json.loads(line) for line in lines]
    return {i: problems[i] for i in HUMANEVAL}


@pytest.fixture(scope="module")
def problems() -> dict[int, dict[str, Any]]:
    return humaneval()


@pytest.mark.slow  # a dozen HumanEval problems, each run in the sandbox
@pytest.mark.parametrize("number", HUMANEVAL)
async def test_humaneval_prompts(number: int, problems: dict[int, dict[str, Any]]) -> None:
    problem = problems[number]
    prompt = (
        "Complete the following Python function. Reply with the complete function in one "
        f"```python code block.\n\n```python\n{problem['prompt']}```"
    )
    request = checks(prompt)
    assert request.kinds == ("code",)
    assert request.examples.count >= 1
    assert request.examples.functions[-1] == problem["entry_point"]
    right = await request.run(fenced(problem["prompt"] + problem["canonical_solution"]))
    assert right.passed, (number, right)
    # The answer as models often give it: the function alone, without the prompt's imports.
    stub = problem["prompt"][problem["prompt"].index("def " + problem["entry_point"]) :]
    assert (await request.run(fenced(stub + problem["canonical_solution"]))).passed
    wrong = await request.run(fenced(stub + "    return object()\n"))
    assert (wrong.passed, wrong.failed) == (False, request.examples.count)
