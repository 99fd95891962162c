"""The program that runs a prompt's examples on a candidate's code, inside the sandbox.

Not imported by the proxy: ``code_check`` reads this file's text and runs it with
``sandbox.run_python``, after a first line that sets ``ARGUMENTS`` to ``main``'s arguments (so
this module may use the standard library only, and no ``from __future__`` import). For each
example it writes one line ``TOKEN INDEX 1`` (passed) or ``TOKEN INDEX 0`` (failed) straight
to file descriptor 1; an example with no line (the run was killed or timed out first) failed.

1. Each prelude part (the prompt's imports and definitions) runs in the candidate's namespace
   (``__name__`` is ``"candidate"``, so an ``if __name__ == "__main__":`` block does not run);
   a part that fails is skipped. Then the candidate's code runs there; if it raises, the
   doctest examples all fail.
2. Each doctest example runs as doctest runs it, whitespace normalised, in that namespace.
3. Each standard-input example runs the candidate's code afresh as ``__main__`` with the input
   as ``sys.stdin``; it passes when it ends (or exits with status 0) having printed the
   expected words.
"""

import doctest
import io
import os
import sys


def main(
    token: str,
    prelude: list[str],
    code: str,
    doctests: list[tuple[str, str]],
    programs: list[tuple[str, str]],
) -> None:
    write = os.write

    def report(index: int, passed: bool) -> None:
        write(1, f"\n{token} {index} {int(passed)}\n".encode())

    namespace: dict[str, object] = {"__name__": "candidate"}
    for part in prelude:
        try:
            exec(compile(part, "<prompt>", "exec"), namespace)
        except BaseException:
            continue
    try:
        exec(compile(code, "<candidate>", "exec"), namespace)
        loaded = True
    except BaseException:
        loaded = False
    _flush()
    for index, (source, want) in enumerate(doctests):
        report(index, loaded and _doctest(namespace, source, want))
    for offset, (stdin, stdout) in enumerate(programs):
        report(len(doctests) + offset, _program(code, stdin, stdout))


def _doctest(namespace: dict[str, object], source: str, want: str) -> bool:
    test = doctest.DocTest([doctest.Example(source, want)], namespace, "example", None, 0, None)
    runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    try:
        result = runner.run(test, out=lambda _text: None, clear_globs=False)
    except BaseException:
        return False
    return result.failed == 0


def _program(code: str, stdin: str, stdout: str) -> bool:
    saved = sys.stdin, sys.stdout
    captured = io.StringIO()
    sys.stdin, sys.stdout = io.StringIO(stdin), captured
    try:
        exec(compile(code, "<candidate>", "exec"), {"__name__": "__main__"})
        ended = True
    except SystemExit as exit:
        ended = exit.code in (None, 0)
    except BaseException:
        ended = False
    finally:
        sys.stdin, sys.stdout = saved
    return ended and captured.getvalue().split() == stdout.split()


def _flush() -> None:
    try:
        sys.stdout.flush()
    except BaseException:
        return


if __name__ == "__main__":
    main(*ARGUMENTS)  # type: ignore[name-defined]  # noqa: F821 (set by the program's first line)
