"""The ``python_tests`` grader: the answer's code run against unit tests, HumanEval style.

Spec::

    {"type": "python_tests", "prompt": "def add(a, b):\\n    \\"\\"\\"Sum.\\"\\"\\"\\n",
     "tests": "def check(candidate):\\n    assert candidate(1, 2) == 3\\n",
     "entry_point": "add", "timeout_s": 10}

``prompt`` (imports, helpers, the signature and docstring; default empty) and ``timeout_s``
(wall-clock seconds, default 10) are optional.

The code taken from the answer is the first fenced block (```python, ```py or bare ```) that
defines ``def <entry_point>(``, else the first such block, else the whole answer. The program
run is, in order:

1. a line that renames the module, so that an ``if __name__ == "__main__":`` block in the
   answer does not run (as in HumanEval's own harness);
2. the prompt, which still provides imports and helpers;
3. the code: directly after the prompt when it is an indented function body without its
   ``def`` line, else after a blank line (a stub in the prompt is then redefined);
4. the tests, ``check(<entry_point>)`` and a line that prints a random token.

The answer passes when the program exits with status 0 within the timeout and the token was
printed, so code that exits early does not pass. Programs run in
``proxy.pycode.sandbox.run_python``; the code is found by ``proxy.pycode.extract``.
"""

from __future__ import annotations

import keyword
import secrets
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from proxy.calibrate.graders.base import STRICT, Verdict, validate_spec
from proxy.pycode.extract import defines, extract_code
from proxy.pycode.sandbox import SandboxResult, run_python

_DETAIL_CHARS = 200
_NOT_MAIN = "__name__ = 'candidate'\n"


class _PythonTestsSpec(BaseModel):
    model_config = STRICT

    type: Literal["python_tests"]
    prompt: str = ""
    tests: str = Field(min_length=1)
    entry_point: str
    timeout_s: float = Field(default=10.0, gt=0, le=600)

    @field_validator("entry_point")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier() or keyword.iskeyword(value):
            raise ValueError("must be a Python function name")
        return value


@dataclass(frozen=True, slots=True)
class PythonTestsGrader:
    prompt: str
    tests: str
    entry_point: str
    timeout_s: float

    @property
    def kind(self) -> str:
        return "python_tests"

    def check(self, answer: str) -> Verdict:
        code = extract_code(answer, self.entry_point)
        if not code.strip():
            return Verdict(False, "no code in the answer")
        token = secrets.token_hex(16)
        program = build_program(self.prompt, code, self.tests, self.entry_point)
        result = run_python(f"{program}print({token!r})\n", timeout_s=self.timeout_s)
        return self._verdict(result, token)

    def _verdict(self, result: SandboxResult, token: str) -> Verdict:
        if result.timed_out:
            return Verdict(False, f"timed out after {self.timeout_s:g} s")
        if result.killed_reason is not None:
            return Verdict(False, f"killed: {result.killed_reason}")
        if result.returncode != 0:
            error = result.last_error_line[:_DETAIL_CHARS]
            return Verdict(False, error or f"exit status {result.returncode}")
        if token not in result.stdout_tail:
            return Verdict(False, "exited before the tests finished")
        return Verdict(True, "passed")


def build(spec: Mapping[str, Any]) -> PythonTestsGrader:
    """A ``PythonTestsGrader`` from its spec; ``GraderError`` names a bad field."""
    parsed = validate_spec(_PythonTestsSpec, spec, path="grader")
    return PythonTestsGrader(
        prompt=parsed.prompt,
        tests=parsed.tests,
        entry_point=parsed.entry_point,
        timeout_s=parsed.timeout_s,
    )


def build_program(prompt: str, code: str, tests: str, entry_point: str) -> str:
    """The program that tests ``code`` (see the module docstring), without the token line."""
    if prompt and not prompt.endswith("\n"):
        prompt += "\n"
    first_line = next((line for line in code.splitlines() if line.strip()), "")
    if not defines(code, entry_point) and first_line[:1] in (" ", "\t"):
        body = prompt + code
    else:
        body = prompt + "\n\n" + textwrap.dedent(code)
    return f"{_NOT_MAIN}{body}\n\n{tests}\n\ncheck({entry_point})\n"
