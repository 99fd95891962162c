"""Planning speed: ``routing.planner.plan`` on a large in-memory policy.

Builds a policy of 100 models x 10 tasks (every model rated for every task with 3 quality
entries, every task allowing 2 rounds: 300 scored candidates per request, the worst case for
that size), plans a few thousand requests with varied task, budget, prompt size, max_tokens
and round cap, and prints median and p99 time per plan in microseconds, for the plan alone
(what a request pays before generating) and with the fallback order (``attempts()``) and the
full candidate list (``candidates``, what ``perfics route --explain`` shows).

With ``--techniques`` every quality entry also lists ``best_of`` at 4 and 8 samples and
``vote`` at 5, and every task allows 8 samples: 600 scored candidates per request.

    .venv/bin/python -m benchmarks.plan_bench [--requests 5000] [--seed 7] [--techniques]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from routing.errors import RoutingError
from routing.planner import Plan, PlanRequest, plan
from routing.policy import Policy
from routing.policy_index import index_of

MODELS = 100
TASKS = 10


def build_policy(rng: random.Random, techniques: bool = False) -> Policy:
    """A valid policy of ``MODELS`` models and ``TASKS`` tasks, prices and quality at random;
    with ``techniques``, selection techniques too (drawn after everything else, so the rest
    of the policy is the same)."""
    tasks: dict[str, dict[str, int]] = {
        f"task{t}": {"max_rounds": 2, "answer_tokens": rng.choice([128, 256, 512, 1024])}
        for t in range(TASKS)
    }
    models: list[dict[str, Any]] = []
    for m in range(MODELS):
        quality = {}
        for name in tasks:
            q0 = round(rng.uniform(2.0, 8.5), 2)
            q1 = round(min(10.0, q0 + rng.uniform(0.0, 1.0)), 2)
            quality[name] = [q0, q1, round(min(10.0, q1 + rng.uniform(0.0, 0.4)), 2)]
        price_in = round(rng.uniform(0.0, 3.0), 3)
        models.append(
            {
                "id": f"model-{m:03d}",
                "backend": "openai",
                "model": f"upstream-{m}",
                "api_base": f"http://10.0.{m // 250}.{m % 250}:8000/v1",
                "context_window": rng.choice([4096, 8192, 32768, 131072]),
                "input_usd_per_mtok": price_in,
                "output_usd_per_mtok": round(price_in * rng.uniform(1.0, 4.0), 3),
                "quality": quality,
            }
        )
    if techniques:
        for task in tasks.values():
            task["max_samples"] = 8
        for model in models:
            model["quality"] = {
                name: {
                    "refine": refine,
                    "best_of": {4: _better(rng, refine[0]), 8: _better(rng, refine[0])},
                    "vote": {5: _better(rng, refine[0])},
                }
                for name, refine in model["quality"].items()
            }
    return Policy.model_validate(
        {"version": 1, "default_task": "task0", "tasks": tasks, "models": models}
    )


def _better(rng: random.Random, q0: float) -> float:
    return round(min(10.0, q0 + rng.uniform(0.0, 1.5)), 2)


def build_requests(rng: random.Random, count: int) -> list[PlanRequest]:
    """Varied requests; budgets range from none through loose to tight enough to cut rounds."""
    requests = []
    for _ in range(count):
        requests.append(
            PlanRequest(
                task=f"task{rng.randrange(TASKS)}",
                prompt_tokens=int(rng.lognormvariate(6.0, 1.2)),
                max_tokens=rng.choice([None, None, 64, 256, 2048]),
                budget_usd=rng.choice([None, None, 0.01, 0.001, 0.0002]),
                max_rounds=rng.choice([None, None, None, 1, 0]),
            )
        )
    return requests


def time_us(requests: list[PlanRequest], work: Callable[[PlanRequest], object]) -> list[float]:
    """Microseconds per call of ``work``, one sample per request (impossible plans included:
    raising is part of planning)."""
    samples = []
    clock = time.perf_counter_ns
    for request in requests:
        started = clock()
        with contextlib.suppress(RoutingError):  # an impossible plan is an outcome too
            work(request)
        samples.append((clock() - started) / 1000)
    return samples


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{label:<28} n={len(samples)}  median {statistics.median(ordered):7.1f} us"
        f"  p99 {p99:7.1f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--techniques", action="store_true", help="list best_of and vote for every model"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    policy = build_policy(rng, args.techniques)
    _ = index_of(policy)  # built at load in the proxy, not per request
    requests = build_requests(rng, args.requests)
    time_us(requests[:200], lambda request: plan(policy, request))  # warm up

    def with_attempts(request: PlanRequest) -> Plan:
        chosen = plan(policy, request)
        chosen.attempts()
        return chosen

    def with_candidates(request: PlanRequest) -> Plan:
        chosen = plan(policy, request)
        _ = chosen.candidates
        return chosen

    impossible = 0
    for request in requests:
        try:
            plan(policy, request)
        except RoutingError:
            impossible += 1
    listed = ", best_of 4 and 8, vote 5" if args.techniques else ""
    print(
        f"policy: {MODELS} models x {TASKS} tasks, 3 quality entries, up to 2 rounds{listed}; "
        f"{len(requests)} requests ({impossible} impossible under their budget)"
    )
    report("plan()", time_us(requests, lambda request: plan(policy, request)))
    report("plan() + attempts()", time_us(requests, with_attempts))
    report("plan() + candidates", time_us(requests, with_candidates))


if __name__ == "__main__":
    main()
