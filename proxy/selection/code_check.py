"""A prompt's code examples run against a candidate answer's code, in the calibration sandbox.

``run_examples(examples, answer, timeout_s=...)`` takes the code from the answer (the fenced
block that defines the prompt's function, else the first Python block, else the whole answer:
``python_tests.extract_code``), refuses code that does not parse without running it, and runs
``harness.py`` on it in ``proxy.pycode.sandbox.run_python`` — the graders' limits
(memory, CPU, file size, open files) and refusals (processes, signals, sockets, writes outside
its temporary directory), killed after ``timeout_s``. Every example counts: one the run did
not reach (a timeout, a crash) failed.

Which way an ``Input: … Output: …`` pair runs: as a program fed the input when the code reads
standard input (``input(``, ``sys.stdin``, ``open(0``); else as a call of the prompt's last
function (or, when the prompt defines none, the answer's last top-level function) with the
pair's literal arguments; else it fails.

What the run reports is counts and a reason that quote neither the code nor the prompt. Like
the graders' sandbox, this is no defence against code written to defeat it: a candidate could
read the program's own file and forge its report lines.
"""

from __future__ import annotations

import ast
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from proxy.pycode.extract import extract_code
from proxy.pycode.sandbox import SandboxResult, run_python

from .examples import CodeExamples

_HARNESS = Path(__file__).with_name("harness.py")
_READS_STDIN = re.compile(r"\binput\s*\(|\bsys\s*\.\s*stdin\b|\bopen\s*\(\s*0\b")


@dataclass(frozen=True, slots=True)
class ExampleRun:
    """``ran`` examples, ``failed`` of them, and why in a few words."""

    ran: int
    failed: int
    reason: str


def run_examples(
    examples: CodeExamples, answer: str, *, timeout_s: float, memory_mb: int = 512
) -> ExampleRun:
    """Run ``examples`` on ``answer``'s code (see the module docstring). Blocks for up to
    ``timeout_s`` (and the sandbox's start-up); never raises for anything the answer holds."""
    total = examples.count
    entry = examples.functions[-1] if examples.functions else ""
    # With no function named, extract_code takes the first Python block, else the answer.
    code = extract_code(answer, entry)
    if not code.strip():
        return ExampleRun(total, total, "no code in the answer")
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return ExampleRun(total, total, "the code does not parse")
    doctests = [(e.source, e.want) for e in examples.examples]
    programs: list[tuple[str, str]] = []
    unrunnable = 0
    function = entry or _last_function(tree)
    reads_stdin = _READS_STDIN.search(code) is not None
    for pair in examples.io:
        if reads_stdin:
            programs.append((pair.stdin, pair.stdout))
        elif function and pair.args is not None and pair.expected is not None:
            doctests.append((f"({function}({pair.args})) == ({pair.expected})\n", "True\n"))
        else:
            unrunnable += 1
    token = secrets.token_hex(16)
    arguments = (token, list(examples.prelude), code, doctests, programs)
    program = f"ARGUMENTS = {arguments!r}\n{_HARNESS.read_text(encoding='utf-8')}"
    result = run_python(program, timeout_s=timeout_s, memory_mb=memory_mb)
    passed = _passed(result, token, total)
    failed = total - passed
    return ExampleRun(total, failed, _reason(result, total, failed, unrunnable))


def _last_function(tree: ast.Module) -> str:
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return names[-1] if names else ""


def _passed(result: SandboxResult, token: str, total: int) -> int:
    """How many distinct examples reported a pass."""
    line = re.compile(rf"^{token} (\d+) 1$", re.MULTILINE)
    return len({int(m[1]) for m in line.finditer(result.stdout_tail) if int(m[1]) < total})


def _reason(result: SandboxResult, total: int, failed: int, unrunnable: int) -> str:
    if result.timed_out:
        ending = " (timed out)"
    elif result.killed_reason is not None:
        ending = f" (killed: {result.killed_reason})"
    else:
        ending = ""
    if unrunnable:
        ending += f"; {unrunnable} with no function to call"
    if not failed:
        return f"{total} examples passed"
    return f"{failed} of {total} examples failed{ending}"
