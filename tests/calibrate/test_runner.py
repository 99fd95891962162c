"""The calibration loop on scripted models and a scripted judge: the r-th answer, means per
task and round count, the sampling used, failures, and the run-directory cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.backends.base import Backend
from proxy.backends.scripted import ScriptedBackend
from proxy.calibrate.questions import Question
from proxy.calibrate.runner import CalibrationSettings, calibrate, default_run_dir
from proxy.calibrate.scores import Calibration, Failure, summary_table
from proxy.calibrate.store import RunStore
from proxy.errors import BackendError
from routing.policy import Policy

from .conftest import RatingJudge

SETTINGS = CalibrationSettings(rounds=2, seed=7)

# Per question, in file order (g1, g2, m1). alpha refines g1 twice, accepts g2's draft at
# once, and stops m1 after one rewrite; beta's critiques always find nothing.
ALPHA = {
    "g1": ["a-g1-d", "fix it", "a-g1-r1", "fix more", "a-g1-r2"],
    "g2": ["a-g2-d", "NO ISSUES"],
    "m1": ["a-m1-d", "wrong sum", "a-m1-r1", "**No issues.**"],
}
BETA = {qid: [f"b-{qid}-d", "NO ISSUES"] for qid in ("g1", "g2", "m1")}
RATINGS = {
    "a-g1-d": "ok. Rating: [[4]]",
    "a-g1-r1": "Rating: [[6]]",
    "a-g1-r2": "Rating: [[8]]",
    "a-g2-d": "Rating: [[5]]",
    "a-m1-d": "wrong. [[3]]",
    "a-m1-r1": "right. [[7.5]]",
    "b-g1-d": "[[2]]",
    "b-g2-d": "[[3]]",
    "b-m1-d": "[[1]]",
}


def scripted(model: str, script: dict[str, list[str]], *qids: str) -> ScriptedBackend:
    replies = [reply for qid in (qids or script) for reply in script[qid]]
    return ScriptedBackend(model, replies)


async def run(
    policy: Policy,
    questions: list[Question],
    models: dict[str, Backend],
    judge: RatingJudge,
    store: RunStore,
    settings: CalibrationSettings = SETTINGS,
) -> Calibration:
    return await calibrate(policy, questions, models, judge, store, settings)


def table_row(table: str, task: str, model: str, rounds: int) -> list[str]:
    """The columns of ``summary_table``'s row for one cell (columns are 2+ spaces apart)."""
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[:3] == [task, model, str(rounds)]:
            return cells
    raise AssertionError(f"no row for {task} {model} {rounds} in\n{table}")


def means(result: Calibration, task: str, model: str) -> list[float | None]:
    cells = [result.cell(task, model, r) for r in range(result.rounds + 1)]
    return [cell.mean if cell else None for cell in cells]


async def test_means_per_task_and_round_count(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    alpha, beta = scripted("alpha", ALPHA), scripted("beta", BETA)
    judge = RatingJudge(RATINGS)
    result = await run(policy, questions, {"alpha": alpha, "beta": beta}, judge, RunStore(tmp_path))

    assert means(result, "general", "alpha") == [4.5, 5.5, 6.5]  # g2 stays at its draft
    assert means(result, "math", "alpha") == [3.0, 7.5, 7.5]  # stopped after one rewrite
    assert means(result, "general", "beta") == [2.5, 2.5, 2.5]
    assert means(result, "math", "beta") == [1.0, 1.0, 1.0]
    assert {(c.n, c.failures) for c in result.cells if c.task == "general"} == {(2, 0)}
    assert result.cell("creative", "alpha", 0) is None  # no questions, no figure
    assert not result.failures
    # each distinct answer graded once
    assert sorted(judge.graded) == sorted(RATINGS)
    assert result.judge_calls == len(RATINGS)
    assert result.model_calls == len(alpha.calls) + len(beta.calls) == 11 + 6
    lists = result.quality_lists()
    assert lists["alpha"] == {
        "general": ([4.5, 5.5, 6.5], [2, 2, 2]),
        "math": ([3.0, 7.5, 7.5], [1, 1, 1]),
    }
    table = summary_table(result)
    # task, model, rounds, n, mean, 95% CI, failures, vs r0, shows
    row = table_row(table, "general", "alpha", 2)
    assert row[3:5] == ["2", "6.50"]
    assert row[6] == "0"
    assert row[7].startswith("+2.00 [")
    assert row[8] == "no difference shown"


async def test_answers_use_the_serving_engine_at_temperature_zero(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    alpha = scripted("alpha", ALPHA)
    await run(policy, questions, {"alpha": alpha}, RatingJudge(RATINGS), RunStore(tmp_path))
    draft, critique = alpha.calls[0], alpha.calls[1]
    assert draft.messages == ({"role": "user", "content": "Why is the sky blue?"},)
    assert (draft.params.temperature, draft.params.seed, draft.params.max_tokens) == (0.0, 7, 100)
    assert critique.messages[-1]["content"] == (
        "Critique your answer; reply exactly NO ISSUES if it is fine."
    )
    assert critique.params.max_tokens == 40  # refinement.critique_max_tokens
    math_draft = alpha.calls[7]
    assert math_draft.messages[0]["content"] == "2+2?"
    assert math_draft.params.max_tokens == 50  # the math task's answer_tokens


async def test_judge_sees_the_reference_and_judge_sampling(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    judge = ScriptedBackend("judge", default="[[5]]")
    settings = CalibrationSettings(rounds=0, seed=3, judge_max_tokens=99)
    beta = ScriptedBackend("beta", ["x", "y", "z"])
    await calibrate(policy, questions, {"beta": beta}, judge, RunStore(tmp_path), settings)
    prompts = [str(call.messages[0]["content"]) for call in judge.calls]
    assert ["[Reference answer]\n4\n" in p for p in prompts] == [False, False, True]
    assert {(c.params.temperature, c.params.seed, c.params.max_tokens) for c in judge.calls} == {
        (0.0, 3, 99)
    }


async def test_unparseable_grades_are_retried_then_counted(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    ratings: dict[str, str | list[str]] = {
        **RATINGS,
        "a-g1-r2": ["great answer", "really great", "I'd say 9"],
    }
    judge = RatingJudge(ratings)
    models: dict[str, Backend] = {"alpha": scripted("alpha", ALPHA)}
    result = await run(policy, questions, models, judge, RunStore(tmp_path))
    assert judge.graded.count("a-g1-r2") == 3
    cell = result.cell("general", "alpha", 2)
    assert cell is not None
    assert (cell.n, cell.failures, cell.mean) == (1, 1, 5.0)
    assert result.failures == (Failure("grade", "alpha", "g1", 2, "no [[N]] rating in 3 replies"),)
    assert result.quality_lists()["alpha"]["general"] == ([4.5, 5.5, 5.0], [2, 2, 1])
    row = table_row(summary_table(result), "general", "alpha", 2)
    assert row[3:5] == ["1", "5.00"]
    assert row[6] == "1"


async def test_backend_error_fails_every_round_count_of_that_question(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    beta = ScriptedBackend("beta", [*BETA["g1"], *BETA["g2"], BackendError("model crashed")])
    result = await run(policy, questions, {"beta": beta}, RatingJudge(RATINGS), RunStore(tmp_path))
    assert [f.stage for f in result.failures] == ["answer"]
    assert result.failures[0].question_id == "m1"
    assert {(c.n, c.failures) for c in result.cells if c.task == "math"} == {(0, 1)}
    assert "math" not in result.quality_lists()["beta"]  # nothing measured: old list kept


async def test_resume_makes_no_model_or_judge_calls(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "run")
    models: dict[str, Backend] = {"alpha": scripted("alpha", ALPHA), "beta": scripted("beta", BETA)}
    first = await run(policy, questions, models, RatingJudge(RATINGS), store)

    silent = {"alpha": ScriptedBackend("alpha"), "beta": ScriptedBackend("beta")}
    judge = RatingJudge({})  # raises on any grade
    resumed = CalibrationSettings(rounds=2, seed=7, resume=True)
    again = await run(policy, questions, dict(silent), judge, store, resumed)
    assert again.cells == first.cells
    assert (again.model_calls, again.judge_calls) == (0, 0)
    assert not silent["alpha"].calls
    assert not judge.graded
    # fewer rounds reuse the longer run's answers too
    fewer = await run(
        policy, questions, dict(silent), judge, store, CalibrationSettings(1, 7, resume=True)
    )
    assert means(fewer, "general", "alpha") == [4.5, 5.5]


async def test_without_resume_the_cache_is_written_but_not_read(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    store = RunStore(tmp_path)
    await run(policy, questions, {"beta": scripted("beta", BETA)}, RatingJudge(RATINGS), store)
    assert len(list((tmp_path / "answers").glob("*.json"))) == 3
    assert len(list((tmp_path / "grades").glob("*.json"))) == 3
    again = scripted("beta", BETA)
    await run(policy, questions, {"beta": again}, RatingJudge(RATINGS), store)
    assert len(again.calls) == 6


async def test_interrupted_answering_resumes_where_it_stopped(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    store = RunStore(tmp_path)
    resumed = CalibrationSettings(rounds=2, seed=7, resume=True)
    # alpha answers g1, then the process dies on g2's draft
    dying = ScriptedBackend("alpha", [*ALPHA["g1"], KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        await run(policy, questions, {"alpha": dying}, RatingJudge(RATINGS), store, resumed)
    assert len(list((tmp_path / "answers").glob("*.json"))) == 1

    rest = scripted("alpha", ALPHA, "g2", "m1")  # only what was not answered yet
    result = await run(policy, questions, {"alpha": rest}, RatingJudge(RATINGS), store, resumed)
    assert not rest.replies
    assert result.model_calls == 6
    assert means(result, "general", "alpha") == [4.5, 5.5, 6.5]


async def test_interrupted_grading_resumes_where_it_stopped(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    store = RunStore(tmp_path)
    resumed = CalibrationSettings(rounds=2, seed=7, resume=True)
    with pytest.raises(RuntimeError, match="interrupted"):
        await run(
            policy, questions, {"alpha": scripted("alpha", ALPHA)},
            RatingJudge(RATINGS, fail_after=4), store, resumed,
        )  # fmt: skip
    judge = RatingJudge(RATINGS)
    result = await run(
        policy, questions, {"alpha": ScriptedBackend("alpha")}, judge, store, resumed
    )
    assert len(judge.graded) == 6 - 4
    assert means(result, "math", "alpha") == [3.0, 7.5, 7.5]


def test_default_run_dir_ignores_quality_but_not_questions(
    policy: Policy, questions: list[Question]
) -> None:
    base = default_run_dir(policy, questions, "judge", SETTINGS)
    assert base.parent == Path(".perfics") / "calibrate"
    requality = policy.model_copy(
        update={"models": tuple(m.model_copy(update={"quality": {}}) for m in policy.models)}
    )
    assert default_run_dir(requality, questions, "judge", SETTINGS) == base
    assert default_run_dir(policy, questions[:2], "judge", SETTINGS) != base
    assert default_run_dir(policy, questions, "alpha", SETTINGS) != base
