"""Does the proxy's plan answer at least as well as the draft alone? A paired check on the
held-out set in this directory (never used for calibration or tuning).

    python -m benchmarks.quality_check [--policy policies/default.yaml | --base-url URL]
                                       [--questions FILE] [--categories C,...] [--limit N]
                                       [--temperature T|unset] [--arms plan,draft] [--out FILE]

Starts ``perfics serve`` with the policy (as ``make serve`` does) unless ``--base-url`` names a
running proxy, then sends every question through the official OpenAI SDK with
``model="gpt-4o"``, as an unmodified application would: once as is (the policy's plan) and once
with ``X-Perfics-Max-Rounds: 0`` and ``X-Perfics-Max-Samples: 1`` (the draft alone: neither
refinement nor selection), in alternating order so neither side always finds the other's prompt
in the KV cache. Every request sends ``seed=0``; ``--temperature unset`` sends no temperature,
as most clients do (the model's ``defaults`` then apply). Each answer is graded by the
question's own grader. Prints accuracy with Wilson 95 % intervals, the paired difference with
its interval and sign test, mean latency, and the techniques, rounds and samples the plan ran,
overall and per category; ``--out`` writes the same as JSON. ``--arms draft`` (or ``plan``)
asks one side only: accuracy without a comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.processes import ROOT, Server, free_port
from proxy.calibrate.questions import Question, load_questions
from proxy.calibrate.stats import mean_interval, paired_difference
from routing.policy_loader import load_policy

QUESTIONS = Path(__file__).with_name("questions.jsonl")
ARMS = ("plan", "draft")


DRAFT_ONLY = {"X-Perfics-Max-Rounds": "0", "X-Perfics-Max-Samples": "1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_check")
    parser.add_argument("--policy", default=str(ROOT / "policies" / "default.yaml"))
    parser.add_argument("--base-url", help="a running proxy, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--questions", default=str(QUESTIONS), help="question.jsonl to ask")
    parser.add_argument("--categories", help="ask only these categories (comma-separated)")
    parser.add_argument("--limit", type=int, help="ask only the first N questions")
    parser.add_argument(
        "--temperature",
        type=_temperature,
        default=0.0,
        help="sent with every request (default 0); unset: send none",
    )
    parser.add_argument(
        "--arms", type=_arms, default=ARMS, help="plan,draft (default) or one of them"
    )
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)

    policy = load_policy(args.policy)
    questions = load_questions(
        args.questions, tasks=list(policy.tasks), default_task=policy.default_task, tasks_map={}
    )
    if args.categories:
        wanted = args.categories.split(",")
        questions = [q for q in questions if q.category in wanted]
    questions = questions[: args.limit]
    server = None
    base_url = args.base_url
    if base_url is None:
        port = free_port()
        command = [sys.executable, "-m", "proxy.cli", "serve", "--policy", args.policy]
        server = Server("perfics", [*command, "--port", str(port)], port=port, ready_path="/readyz")
        base_url = f"http://127.0.0.1:{port}/v1"
    try:
        rows = _ask_all(base_url, questions, args.temperature, args.arms)
    finally:
        if server is not None:
            server.stop()
    summary = _summary(rows, args.arms)
    print(_format(summary, args.policy, len(questions), args.temperature, args.arms))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


def _temperature(value: str) -> float | None:
    return None if value == "unset" else float(value)


def _arms(value: str) -> tuple[str, ...]:
    arms = tuple(dict.fromkeys(value.split(",")))
    if not arms or any(arm not in ARMS for arm in arms):
        raise argparse.ArgumentTypeError(f"expected plan, draft or both, got {value!r}")
    return tuple(arm for arm in ARMS if arm in arms)


def _ask_all(
    base_url: str, questions: list[Question], temperature: float | None, arms: tuple[str, ...]
) -> list[dict[str, Any]]:
    from openai import OpenAI, omit

    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    rows = []
    for i, question in enumerate(questions):
        row: dict[str, Any] = {"id": question.question_id, "category": question.category}
        order = arms if i % 2 == 0 else arms[::-1]
        for arm in order:
            started = time.perf_counter()
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": question.prompt}],
                temperature=omit if temperature is None else temperature,
                seed=0,
                extra_headers=DRAFT_ONLY if arm == "draft" else {},
            )
            latency = time.perf_counter() - started
            text = raw.parse().choices[0].message.content or ""
            assert question.grader is not None, f"{question.question_id} has no grader"
            verdict = question.grader.check(text)
            headers = raw.headers
            row[arm] = {
                "passed": verdict.passed,
                "latency_s": round(latency, 3),
                "technique": headers.get("x-perfics-technique", "draft"),
                "rounds": int(headers.get("x-perfics-rounds", "0")),
                "rounds_planned": int(headers.get("x-perfics-rounds-planned", "0")),
                "samples_planned": int(headers.get("x-perfics-samples-planned", "1")),
                "selected_by": headers.get("x-perfics-selected-by"),
                "task": headers.get("x-perfics-task"),
                "model": headers.get("x-perfics-model"),
            }
        rows.append(row)
        verdicts = ", ".join(f"{arm} {'pass' if row[arm]['passed'] else 'fail'}" for arm in arms)
        print(f"{i + 1}/{len(questions)} {question.question_id}: {verdicts}", file=sys.stderr)
    return rows


def _summary(rows: list[dict[str, Any]], arms: tuple[str, ...] = ARMS) -> dict[str, Any]:
    def scores(arm: str, subset: list[dict[str, Any]]) -> list[float]:
        return [10.0 if r[arm]["passed"] else 0.0 for r in subset]

    groups = {"all": rows}
    for row in rows:
        groups.setdefault(row["category"], []).append(row)
    summary: dict[str, Any] = {}
    for name, subset in groups.items():
        found: dict[str, Any] = {"n": len(subset)}
        for arm in arms:
            interval = mean_interval(scores(arm, subset))
            found[arm] = {
                "accuracy_pct": round(10 * interval.mean, 1),
                "ci_pct": [round(10 * interval.low, 1), round(10 * interval.high, 1)],
                "mean_latency_s": round(sum(r[arm]["latency_s"] for r in subset) / len(subset), 2),
                "models": dict(Counter(r[arm]["model"] for r in subset)),
            }
        if "plan" in arms:
            plans = [r["plan"] for r in subset]
            found["plan_techniques"] = dict(
                Counter(f"{p['technique']} {p['samples_planned']}" for p in plans)
            )
            found["plan_selected_by"] = dict(Counter(str(p["selected_by"]) for p in plans))
            found["plan_rounds"] = dict(Counter(p["rounds"] for p in plans))
        if len(arms) == 2:
            diff = paired_difference(scores("plan", subset), scores("draft", subset))
            found |= {
                "difference_pct": round(10 * diff.mean, 1),
                "difference_ci_pct": [_points(diff.low), _points(diff.high)],
                "better": diff.better,
                "worse": diff.worse,
                "sign_test_p": round(diff.p_value, 4),
            }
        summary[name] = found
    return summary


def _points(bound: float) -> float | None:
    """A difference's bound in percentage points; None where one pair leaves it unbounded."""
    return round(10 * bound, 1) if math.isfinite(bound) else None


def _format(
    summary: dict[str, Any],
    policy: str,
    n: int,
    temperature: float | None,
    arms: tuple[str, ...] = ARMS,
) -> str:
    def accuracy(arm: dict[str, Any]) -> str:
        return f"{arm['accuracy_pct']:5.1f} [{arm['ci_pct'][0]:.1f}, {arm['ci_pct'][1]:.1f}]"

    header = ("set", "n", *(f"{arm} acc %" for arm in arms))
    if len(arms) == 2:
        header += ("plan-draft pts", "+/-")
    header += ("latency s", "plan ran") if "plan" in arms else ("latency s",)
    rows = [header]
    for name, s in summary.items():
        row = [name, str(s["n"]), *(accuracy(s[arm]) for arm in arms)]
        if len(arms) == 2:
            low, high = s["difference_ci_pct"]
            bounds = f" [{low:+.1f}, {high:+.1f}]" if low is not None and high is not None else ""
            row += [f"{s['difference_pct']:+.1f}{bounds}"]
            row += [f"+{s['better']}/-{s['worse']}"]
        row += [" / ".join(f"{s[arm]['mean_latency_s']:.2f}" for arm in arms)]
        if "plan" in arms:
            row += [json.dumps(s["plan_techniques"], sort_keys=True)]
        rows.append(tuple(row))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    shown = "unset (none sent)" if temperature is None else f"{temperature}"
    title = (
        f"quality check: {n} held-out questions, policy {policy}, model=gpt-4o, "
        f"temperature {shown}, seed 0; accuracy with Wilson 95% CI, paired difference with t CI"
    )
    return "\n".join([title, "", *table])


if __name__ == "__main__":
    raise SystemExit(main())
