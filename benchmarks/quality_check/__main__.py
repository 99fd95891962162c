"""Does the proxy's plan answer at least as well as the draft alone? A paired check on the
held-out set in this directory (never used for calibration or tuning).

    python -m benchmarks.quality_check [--policy policies/default.yaml | --base-url URL]
                                       [--limit N] [--temperature T] [--out FILE]

Starts ``perfics serve`` with the policy (as ``make serve`` does) unless ``--base-url`` names a
running proxy, then sends every question twice through the official OpenAI SDK with
``model="gpt-4o"``, as an unmodified application would: once as is (the policy's plan) and once
with ``X-Perfics-Max-Rounds: 0`` (the draft alone), in alternating order so neither side always
finds the other's prompt in the KV cache. Each answer is graded by the question's own grader.
Prints accuracy with Wilson 95 % intervals, the paired difference with its interval and sign
test, mean latency, and the rounds the plan ran; ``--out`` writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_check")
    parser.add_argument("--policy", default=str(ROOT / "policies" / "default.yaml"))
    parser.add_argument("--base-url", help="a running proxy, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--limit", type=int, help="ask only the first N questions")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)

    policy = load_policy(args.policy)
    questions = load_questions(
        QUESTIONS, tasks=list(policy.tasks), default_task=policy.default_task, tasks_map={}
    )[: args.limit]
    server = None
    base_url = args.base_url
    if base_url is None:
        port = free_port()
        command = [sys.executable, "-m", "proxy.cli", "serve", "--policy", args.policy]
        server = Server("perfics", [*command, "--port", str(port)], port=port, ready_path="/readyz")
        base_url = f"http://127.0.0.1:{port}/v1"
    try:
        rows = _ask_all(base_url, questions, args.temperature)
    finally:
        if server is not None:
            server.stop()
    summary = _summary(rows)
    print(_format(summary, args.policy, len(questions), args.temperature))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


def _ask_all(base_url: str, questions: list[Question], temperature: float) -> list[dict[str, Any]]:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    rows = []
    for i, question in enumerate(questions):
        row: dict[str, Any] = {"id": question.question_id, "category": question.category}
        order = ARMS if i % 2 == 0 else ARMS[::-1]
        for arm in order:
            headers = {"X-Perfics-Max-Rounds": "0"} if arm == "draft" else {}
            started = time.perf_counter()
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": question.prompt}],
                temperature=temperature,
                seed=0,
                extra_headers=headers,
            )
            latency = time.perf_counter() - started
            text = raw.parse().choices[0].message.content or ""
            assert question.grader is not None, f"{question.question_id} has no grader"
            verdict = question.grader.check(text)
            row[arm] = {
                "passed": verdict.passed,
                "latency_s": round(latency, 3),
                "rounds": int(raw.headers.get("x-perfics-rounds", "0")),
                "rounds_planned": int(raw.headers.get("x-perfics-rounds-planned", "0")),
                "task": raw.headers.get("x-perfics-task"),
                "model": raw.headers.get("x-perfics-model"),
            }
        rows.append(row)
        print(
            f"{i + 1}/{len(questions)} {question.question_id}: plan "
            f"{'pass' if row['plan']['passed'] else 'fail'}, draft "
            f"{'pass' if row['draft']['passed'] else 'fail'}",
            file=sys.stderr,
        )
    return rows


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def scores(arm: str, subset: list[dict[str, Any]]) -> list[float]:
        return [10.0 if r[arm]["passed"] else 0.0 for r in subset]

    groups = {"all": rows}
    for row in rows:
        groups.setdefault(row["category"], []).append(row)
    summary: dict[str, Any] = {}
    for name, subset in groups.items():
        arms = {}
        for arm in ARMS:
            interval = mean_interval(scores(arm, subset))
            arms[arm] = {
                "accuracy_pct": round(10 * interval.mean, 1),
                "ci_pct": [round(10 * interval.low, 1), round(10 * interval.high, 1)],
                "mean_latency_s": round(sum(r[arm]["latency_s"] for r in subset) / len(subset), 2),
            }
        diff = paired_difference(scores("plan", subset), scores("draft", subset))
        summary[name] = {
            "n": len(subset),
            **arms,
            "difference_pct": round(10 * diff.mean, 1),
            "difference_ci_pct": [round(10 * diff.low, 1), round(10 * diff.high, 1)],
            "better": diff.better,
            "worse": diff.worse,
            "sign_test_p": round(diff.p_value, 4),
            "plan_rounds": dict(Counter(r["plan"]["rounds"] for r in subset)),
            "plan_rounds_planned": dict(Counter(r["plan"]["rounds_planned"] for r in subset)),
        }
    return summary


def _format(summary: dict[str, Any], policy: str, n: int, temperature: float) -> str:
    def accuracy(arm: dict[str, Any]) -> str:
        return f"{arm['accuracy_pct']:5.1f} [{arm['ci_pct'][0]:.1f}, {arm['ci_pct'][1]:.1f}]"

    header = (
        "set",
        "n",
        "plan acc %",
        "draft acc %",
        "plan-draft pts",
        "+/-",
        "latency s",
        "rounds",
    )
    rows = [header]
    for name, s in summary.items():
        low, high = s["difference_ci_pct"]
        rows.append(
            (
                name,
                str(s["n"]),
                accuracy(s["plan"]),
                accuracy(s["draft"]),
                f"{s['difference_pct']:+.1f} [{low:+.1f}, {high:+.1f}]",
                f"+{s['better']}/-{s['worse']}",
                f"{s['plan']['mean_latency_s']:.2f} / {s['draft']['mean_latency_s']:.2f}",
                json.dumps(s["plan_rounds"], sort_keys=True),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    title = (
        f"quality check: {n} held-out questions, policy {policy}, model=gpt-4o, "
        f"temperature {temperature}; accuracy with Wilson 95% CI, paired difference with t CI"
    )
    return "\n".join([title, "", *table])


if __name__ == "__main__":
    raise SystemExit(main())
