"""``perfics calibrate`` and ``perfics report``: argument parsers and their handlers.

``proxy.cli`` registers ``add_calibrate_parser`` and ``add_report_parser`` and imports this
module only when one of the two commands runs. Exit codes: 0 done; 1 a backend could not start
or nothing could be measured; 2 a bad argument, input file or resulting policy.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .questions import (
    QuestionsError,
    limit_per_task,
    load_questions,
    load_tasks_map,
)
from .suites import SUITES, VERIFIABLE, load_suites

if TYPE_CHECKING:
    from proxy.backends.base import Backend
    from routing.policy import Policy

    from .questions import Question
    from .runner import CalibrationSettings
    from .scores import Calibration


def add_calibrate_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "calibrate",
        help="measure each model's quality per task and round count",
        description="Answer question suites on each model (with 0..R refinement rounds), grade "
        "every answer (by its own checker, or 1-10 by a judge model) and propose the means as "
        "the policy's quality lists, with 95%% intervals and the paired gain over the draft.",
    )
    parser.add_argument("--policy", required=True, help="policy YAML file")
    parser.add_argument(
        "--suite",
        help=f"built-in suites, comma-separated: {', '.join(SUITES)} "
        f"(default without --questions: {','.join(VERIFIABLE)})",
    )
    parser.add_argument("--questions", help="question.jsonl; lines may carry a grader")
    parser.add_argument(
        "--judge", help="catalog model id that grades questions without a grader of their own"
    )
    parser.add_argument("--rounds", type=_non_negative, default=2, help="R (default 2)")
    parser.add_argument("--models", help="comma-separated model ids (default: all but the judge)")
    parser.add_argument("--tasks-map", help="YAML/JSON {category: task}")
    parser.add_argument("--per-task", type=_positive, help="use at most N questions per task")
    parser.add_argument("--tasks", help="comma-separated: calibrate only these tasks' questions")
    parser.add_argument("--out", help="write the calibrated policy here")
    parser.add_argument(
        "--write", action="store_true", help="without --out: rewrite --policy in place"
    )
    parser.add_argument(
        "--write-hardware", action="store_true", help="also write measured tokens/s"
    )
    parser.add_argument("--resume", action="store_true", help="reuse cached answers and grades")
    parser.add_argument("--run-dir", help="cache directory (default .perfics/calibrate/<hash>)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--results", help="also write every figure, interval and per-question grade as JSON"
    )
    parser.add_argument(
        "--gains",
        choices=("shown", "mean"),
        default="shown",
        help="shown (default): a round count's gain counts only where its 95%% interval "
        "excludes zero, else Q_r is written as Q_0; mean: write every measured mean",
    )
    parser.add_argument(
        "--samples",
        type=_sizes,
        help="selection sizes to measure, comma-separated (e.g. 4,8): every technique of "
        "--techniques at each (default: the sizes each model's quality lists per task)",
    )
    parser.add_argument(
        "--techniques",
        type=_techniques,
        help="best_of, vote (comma-separated), or none (default: both with --samples, else "
        "those the policy lists)",
    )
    parser.add_argument("--judge-max-tokens", type=_positive, default=256)
    parser.add_argument(
        "--judge-retries", type=_non_negative, default=2, help="re-asks per unparseable grade"
    )
    parser.set_defaults(handler=run_calibrate)


def add_report_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="chart quality against cost and refinement gain per task",
        description="Write quality-vs-cost and refinement-gain charts (PNG) and report.md.",
    )
    parser.add_argument("--policy", required=True, help="policy YAML file")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--prompt-tokens", type=_positive, default=100, help="typical prompt (default 100)"
    )
    parser.add_argument(
        "--calibration",
        action="append",
        default=[],
        help="results JSON of perfics calibrate --results: intervals as error bars, gains in "
        "words (repeat for several runs; a later file's figures replace an earlier one's)",
    )
    parser.set_defaults(handler=run_report)


def run_calibrate(args: argparse.Namespace) -> int:
    from proxy.logs import configure_logging
    from routing.errors import PolicyError
    from routing.policy_loader import load_policy

    from .runner import CalibrationSettings, default_run_dir
    from .selections import SelectionSettings

    out, err = sys.stdout, sys.stderr
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=err)
        return 2
    catalog = [spec.id for spec in policy.models]
    if args.judge is not None and args.judge not in catalog:
        print(f"--judge: {args.judge!r} is not a model of {args.policy}", file=err)
        return 2
    models = _split(args.models) if args.models else [m for m in catalog if m != args.judge]
    unknown = [m for m in models if m not in catalog]
    if unknown or not models:
        print(f"--models: unknown {unknown}" if unknown else "no model to calibrate", file=err)
        return 2
    suites = tuple(_split(args.suite)) if args.suite else ()
    if not suites and not args.questions:
        suites = VERIFIABLE
    try:
        questions = _questions(args, policy, suites)
    except QuestionsError as exc:
        print(exc, file=err)
        return 2
    if args.tasks:
        wanted = _split(args.tasks)
        unknown_tasks = [task for task in wanted if task not in policy.tasks]
        if unknown_tasks:
            print(f"--tasks: {', '.join(unknown_tasks)} not a task of {args.policy}", file=err)
            return 2
        questions = [q for q in questions if q.task in wanted]
        if not questions:
            print(f"--tasks: no question of the suites is for {args.tasks}", file=err)
            return 2
    questions = limit_per_task(questions, args.per_task)
    judged = [q.source for q in questions if q.judged]
    if judged and args.judge is None:
        shown = ", ".join(judged[:10]) + (
            f" and {len(judged) - 10} more" if len(judged) > 10 else ""
        )
        print(f"questions without a grader need --judge: {shown}", file=err)
        return 2
    judge = args.judge if judged else None
    settings = CalibrationSettings(
        selection=SelectionSettings(tuple(args.samples or ()), args.techniques),
        rounds=args.rounds,
        seed=args.seed,
        judge_max_tokens=args.judge_max_tokens,
        judge_retries=args.judge_retries,
        resume=args.resume,
        suites=suites + (("questions",) if args.questions else ()),
    )
    run_dir = Path(args.run_dir or default_run_dir(policy, questions, judge, settings))
    graded_by = f"judge {judge}" if judge else "verifiable graders"
    print(
        f"calibrating {', '.join(models)} on {len(questions)} questions, rounds 0..{args.rounds}, "
        f"{graded_by}; run dir {run_dir}",
        file=err,
    )
    configure_logging("warning")  # JSON lines on stderr; progress and failures say the rest
    started = time.monotonic()
    try:
        calibration = asyncio.run(
            _calibrate(policy, questions, models, judge, run_dir, settings, err)
        )
    except _StartFailed as exc:
        print(exc, file=err)
        return 1
    wall_s = time.monotonic() - started
    _print_summary(calibration, policy, wall_s, out)
    if args.results:
        from .results import write_results

        write_results(Path(args.results), calibration, questions, wall_s=wall_s)
        print(f"\nwrote {args.results}", file=out)
    return propose_policy(args, calibration, out, err)


def _questions(args: argparse.Namespace, policy: Policy, suites: Sequence[str]) -> list[Question]:
    mapping = load_tasks_map(args.tasks_map) if args.tasks_map else {}
    context: dict[str, Any] = {
        "tasks": list(policy.tasks),
        "default_task": policy.default_task,
        "tasks_map": mapping,
    }
    questions = load_suites(suites, **context) if suites else []
    if args.questions:
        questions += load_questions(args.questions, **context)
    ids = [q.question_id for q in questions]
    duplicates = sorted({qid for qid in ids if ids.count(qid) > 1})
    if duplicates:
        raise QuestionsError(f"question ids used twice: {', '.join(duplicates[:10])}")
    return questions


def run_report(args: argparse.Namespace) -> int:
    from routing.errors import PolicyError
    from routing.policy_loader import load_policy

    from .policy_writer import calibrated_lists
    from .report import write_report

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 2
    measured = calibrated_lists(Path(args.policy).read_text(encoding="utf-8"))
    intervals = None
    if args.calibration:
        from .report import Measured
        from .results import load_cells

        intervals = {}
        for name in args.calibration:
            try:
                loaded = load_cells(Path(name))
            except (OSError, ValueError, KeyError) as exc:
                print(f"--calibration: {exc}", file=sys.stderr)
                return 2
            for cell, gain in loaded:
                intervals[(cell.task, cell.model, cell.rounds)] = Measured(
                    cell.n, cell.interval.low, cell.interval.high, gain
                )
    out = Path(args.out)
    paths = write_report(
        policy, out, prompt_tokens=args.prompt_tokens, calibrated=measured, intervals=intervals
    )
    for path in paths:
        print(path)
    return 0


class _StartFailed(Exception):
    pass


async def _calibrate(
    policy: Policy,
    questions: Sequence[Question],
    models: Sequence[str],
    judge_id: str | None,
    run_dir: Path,
    settings: CalibrationSettings,
    err: TextIO,
) -> Calibration:
    from proxy.backends import BackendSettings, build_backend

    from .runner import calibrate
    from .store import RunStore

    backends: dict[str, Backend] = {}
    wanted = [*models, judge_id] if judge_id is not None else list(models)
    try:
        for model in dict.fromkeys(wanted):
            backend = build_backend(policy.model(model), BackendSettings())
            backends[model] = backend
            try:
                await backend.start()
            except Exception as exc:
                raise _StartFailed(f"{model}: backend failed to start: {exc}") from exc
        return await calibrate(
            policy,
            questions,
            {m: backends[m] for m in models},
            backends[judge_id] if judge_id is not None else None,
            RunStore(run_dir),
            settings,
            progress_stream=err,
        )
    finally:
        for backend in backends.values():
            await backend.aclose()


def _print_summary(calibration: Calibration, policy: Policy, wall_s: float, out: TextIO) -> None:
    from .scores import ablation_table, summary_table

    print(summary_table(calibration), file=out)
    if calibration.ablation:
        print("\nacceptance rules after one round (same drafts, critiques and rewrites):", file=out)
        print(ablation_table(calibration), file=out)
    if calibration.techniques:
        from .techniques import technique_table

        print("\nselection techniques (gain: paired with the draft, same questions):", file=out)
        print(technique_table(calibration, ablation=False), file=out)
        print(
            "\nablation on the same samples (best_of with the checks flipped; any: the best "
            "of the first k answers by the hidden grader, a ceiling):",
            file=out,
        )
        print(technique_table(calibration, ablation=True), file=out)
        for (model, task), (draft_s, samples_s) in calibration.latency.items():
            print(
                f"  {model} {task}: a draft {draft_s:.1f} s, its samples {samples_s:.1f} s",
                file=out,
            )
    print(
        f"\nwall time {wall_s:.0f} s; model calls {calibration.model_calls}, "
        f"samples {calibration.samples_made}, judge calls {calibration.judge_calls}, "
        f"grader checks {calibration.checks}",
        file=out,
    )
    print("\nmeasured speed (draft calls; tokens/s)   policy hardware now", file=out)
    for model, speed in calibration.throughput.items():
        hardware = policy.model(model).hardware
        now = (
            f"prefill {hardware.prefill_tokens_per_s}, decode {hardware.decode_tokens_per_s}"
            if hardware is not None
            else "priced per token"
        )
        print(
            f"  {model}: prefill {speed.prefill_tokens_per_s}, decode "
            f"{speed.decode_tokens_per_s} ({speed.calls} calls)   {now}",
            file=out,
        )
    if calibration.failures:
        print(f"\n{len(calibration.failures)} failures:", file=out)
        for failure in calibration.failures:
            where = "" if failure.rounds is None else f" r={failure.rounds}"
            print(
                f"  {failure.stage} {failure.model} q{failure.question_id}{where}: "
                f"{failure.reason}",
                file=out,
            )


def propose_policy(
    args: argparse.Namespace, calibration: Calibration, out: TextIO, err: TextIO
) -> int:
    from routing.errors import PolicyError

    from .policy_writer import apply_calibration, check_policy_text, diff, write_policy

    source = Path(args.policy)
    original = source.read_text(encoding="utf-8")
    edited = apply_calibration(
        original,
        calibration,
        date=datetime.date.today().isoformat(),
        hardware=args.write_hardware,
        machine=machine_description(),
        significant_only=args.gains == "shown",
    )
    for note in edited.notes:
        print(f"note: {note}", file=out)
    if not edited.changes:
        print("nothing measured completely; the policy is unchanged", file=err)
        return 1
    target = Path(args.out) if args.out else source if args.write else None
    try:
        if target is None:
            check_policy_text(edited.text, str(source))
            print("\nproposed change (pass --out FILE, or --write to rewrite in place):", file=out)
            print(diff(original, edited.text, str(source)), file=out, end="")
        else:
            write_policy(target, edited.text)
            print(f"\nwrote {target}", file=out)
    except PolicyError as exc:
        print(f"refusing to write: the calibrated policy is invalid:\n{exc}", file=err)
        return 2
    return 0


def machine_description() -> str:
    """``x86_64 2cpu`` and the CPU model when the system names it: where figures were taken."""
    import os
    import platform

    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            name = next(
                (ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    base = f"{platform.machine()} {os.cpu_count() or 1}cpu"
    return f"{base} {name}".strip() if name else base


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _sizes(value: str) -> list[int]:
    from .techniques import check_sizes

    try:
        sizes = [int(part) for part in _split(value)]
        check_sizes(sizes)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return sizes


def _techniques(value: str) -> tuple[str, ...]:
    from routing.techniques import SELECTION_TECHNIQUES

    names = _split(value)
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in SELECTION_TECHNIQUES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected {', '.join(SELECTION_TECHNIQUES)} or none, got {value!r}"
        )
    return tuple(dict.fromkeys(names))


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number
