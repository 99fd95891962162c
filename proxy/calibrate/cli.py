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
    default_questions_path,
    limit_per_task,
    load_questions,
    load_tasks_map,
)

if TYPE_CHECKING:
    from proxy.backends.base import Backend
    from routing.policy import Policy

    from .questions import Question
    from .runner import CalibrationSettings
    from .scores import Calibration


def add_calibrate_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "calibrate",
        help="measure each model's quality per task and round count with a judge model",
        description="Answer a question set on each model (with 0..R refinement rounds), "
        "grade the answers 1-10 with a judge model and propose the means as the policy's "
        "quality lists.",
    )
    parser.add_argument("--policy", required=True, help="policy YAML file")
    parser.add_argument(
        "--questions", help="FastChat-style question.jsonl (default: the shipped set)"
    )
    parser.add_argument("--judge", required=True, help="catalog model id that grades answers")
    parser.add_argument("--rounds", type=_non_negative, default=2, help="R (default 2)")
    parser.add_argument("--models", help="comma-separated model ids (default: all but the judge)")
    parser.add_argument("--tasks-map", help="YAML/JSON {category: task}")
    parser.add_argument("--per-task", type=_positive, help="use at most N questions per task")
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
    parser.set_defaults(handler=run_report)


def run_calibrate(args: argparse.Namespace) -> int:
    from proxy.logs import configure_logging
    from routing.errors import PolicyError
    from routing.policy_loader import load_policy

    from .runner import CalibrationSettings, default_run_dir

    out, err = sys.stdout, sys.stderr
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=err)
        return 2
    catalog = [spec.id for spec in policy.models]
    if args.judge not in catalog:
        print(f"--judge: {args.judge!r} is not a model of {args.policy}", file=err)
        return 2
    models = _split(args.models) if args.models else [m for m in catalog if m != args.judge]
    unknown = [m for m in models if m not in catalog]
    if unknown or not models:
        print(f"--models: unknown {unknown}" if unknown else "no model to calibrate", file=err)
        return 2
    try:
        mapping = load_tasks_map(args.tasks_map) if args.tasks_map else {}
        questions = load_questions(
            args.questions or default_questions_path(),
            tasks=list(policy.tasks),
            default_task=policy.default_task,
            tasks_map=mapping,
        )
    except QuestionsError as exc:
        print(exc, file=err)
        return 2
    questions = limit_per_task(questions, args.per_task)
    settings = CalibrationSettings(
        rounds=args.rounds,
        seed=args.seed,
        judge_max_tokens=args.judge_max_tokens,
        judge_retries=args.judge_retries,
        resume=args.resume,
    )
    run_dir = Path(args.run_dir or default_run_dir(policy, questions, args.judge, settings))
    print(
        f"calibrating {', '.join(models)} on {len(questions)} questions, rounds 0..{args.rounds}, "
        f"judge {args.judge}; run dir {run_dir}",
        file=err,
    )
    configure_logging("warning")  # JSON lines on stderr; progress and failures say the rest
    started = time.monotonic()
    try:
        calibration = asyncio.run(
            _calibrate(policy, questions, models, args.judge, run_dir, settings, err)
        )
    except _StartFailed as exc:
        print(exc, file=err)
        return 1
    _print_summary(calibration, policy, time.monotonic() - started, out)
    return propose_policy(args, calibration, out, err)


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
    out = Path(args.out)
    for path in write_report(policy, out, prompt_tokens=args.prompt_tokens, calibrated=measured):
        print(path)
    return 0


class _StartFailed(Exception):
    pass


async def _calibrate(
    policy: Policy,
    questions: Sequence[Question],
    models: Sequence[str],
    judge_id: str,
    run_dir: Path,
    settings: CalibrationSettings,
    err: TextIO,
) -> Calibration:
    from proxy.backends import BackendSettings, build_backend

    from .runner import calibrate
    from .store import RunStore

    backends: dict[str, Backend] = {}
    try:
        for model in dict.fromkeys([*models, judge_id]):
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
            backends[judge_id],
            RunStore(run_dir),
            settings,
            progress_stream=err,
        )
    finally:
        for backend in backends.values():
            await backend.aclose()


def _print_summary(calibration: Calibration, policy: Policy, wall_s: float, out: TextIO) -> None:
    from .scores import summary_table

    print(summary_table(calibration), file=out)
    print(
        f"\nwall time {wall_s:.0f} s; model calls {calibration.model_calls}, "
        f"judge calls {calibration.judge_calls}",
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


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number
