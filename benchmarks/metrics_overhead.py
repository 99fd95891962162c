"""What metrics add to a request: two ``perfics serve`` processes on the same policy in front
of the stub, one with metrics off (``PERFICS_METRICS=off``) and one with them on (the
default), measured side by side in one run, interleaved with the stub direct, at concurrency 1,
non-streaming and streaming. Each scenario runs twice, the two servers in either order within
each round (the second server of a round measured slightly slower or faster in A/A runs of two
identical servers), and the figure is the mean over both passes of the metrics-on server's
added median latency minus the metrics-off server's. Tracing is off in both (no ``OTEL_*``
variables).

On a shared machine the end-to-end difference is within the run's noise (A/A runs of two
identical servers differ by up to ~0.15 ms), so the CPU the meter itself spends per request is
measured in-process too: ``RequestMeter`` from arrival to ``done`` on a real ``Metrics``, for a
request without rounds (one draft) and one with two rounds (five calls), median of
``METER_REPEATS`` batches.

What a scrape costs the server is measured apart: the median time of ``GET /metrics`` on the
metrics-on server after the runs, over ``SCRAPES`` scrapes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import latency
from benchmarks.processes import HOST, Server, start_stub
from benchmarks.servers import perfics_policy, start_perfics
from proxy.results import CallRecord, Outcome, Refined, Spent, Usage

SCRAPES = 50
METER_REPEATS = 7
METER_BATCH = 2000


def scenarios(*, quick: bool) -> list[latency.Scenario]:
    scale = 4 if quick else 1
    return [
        latency.Scenario("non-streaming", False, 1, 2000 // scale, 200),
        latency.Scenario("streaming", True, 1, 1000 // scale, 100),
    ]


def run(workdir: Path, *, quick: bool, rounds: int) -> dict[str, Any]:
    stub = start_stub(workdir / "stub-metrics.log")
    servers: dict[str, Server] = {"direct": stub}
    try:
        policy = perfics_policy(stub.port)
        servers["metrics-off"] = start_perfics(
            policy, workdir, name="perfics-metrics-off", env={"PERFICS_METRICS": "off"}
        )
        servers["metrics-on"] = start_perfics(policy, workdir, name="perfics-metrics-on")
        results: dict[str, Any] = {}
        for scenario in scenarios(quick=quick):
            label = f"{scenario.name}, c={scenario.concurrency}"
            passes = []
            for order in (("metrics-off", "metrics-on"), ("metrics-on", "metrics-off")):
                print(f"metrics: {label}, {' then '.join(order)} ...", flush=True)
                ordered = {"direct": stub, **{name: servers[name] for name in order}}
                measured = asyncio.run(latency.measure(ordered, scenario, rounds))
                passes.append(
                    {
                        "order": list(order),
                        "results": measured,
                        "on_minus_off_ms": measured["metrics-on"]["added_median_ms"]
                        - measured["metrics-off"]["added_median_ms"],
                    }
                )
            results[scenario.key] = {
                "label": label,
                "requests_per_target": 2 * scenario.requests,
                "passes": passes,
                "metrics_added_median_ms": statistics.mean(p["on_minus_off_ms"] for p in passes),
            }
        scrape_ms = _scrape_ms(servers["metrics-on"])
    finally:
        for server in reversed(servers.values()):
            server.stop()
    return {
        "scenarios": results,
        "scrape_median_ms": scrape_ms,
        "scrapes": SCRAPES,
        "meter_us": {str(rounds): _meter_us(rounds) for rounds in (0, 2)},
    }


def _meter_us(rounds: int) -> float:
    """Microseconds of CPU per request that ``RequestMeter`` spends, metrics on, tracing off."""
    from types import SimpleNamespace
    from typing import cast

    from proxy.ops.meter import Ops, RequestMeter
    from proxy.ops.metrics import Metrics
    from proxy.protocol import ChatCompletionRequest
    from proxy.runtime import Runtime
    from routing.decision import decide
    from routing.hypothetical import hypothetical_facts
    from routing.policy_loader import parse_policy

    policy = parse_policy(perfics_policy(1), "bench.yaml")
    runtime = cast(Runtime, SimpleNamespace(policy=policy))
    decision = decide(policy, hypothetical_facts(prompt="Say hello."))
    calls = [CallRecord("draft", 0, Usage(12, 16), 0, 0.001, "stub", 1e-7)]
    for number in range(1, rounds + 1):
        calls += [
            CallRecord("critique", number, Usage(40, 20), 0, 0.001, "stub", 1e-7),
            CallRecord("rewrite", number, Usage(70, 16), 0, 0.001, "stub", 1e-7),
        ]
    refined = Refined(
        "hi", "stop", (), Usage(12, 16), rounds, "max_rounds", (), False, (), tuple(calls)
    )
    spent = Spent(Usage(12, 16), 1e-6, tuple(calls))
    outcome = Outcome("stub", rounds, (refined,), spent, (), 2e-5, 1)
    ops = Ops(Metrics({}), None)
    chat = cast(ChatCompletionRequest, None)
    timings = []
    for _ in range(METER_REPEATS):
        started = time.process_time()
        for _ in range(METER_BATCH):
            meter = RequestMeter(ops)
            meter.parsed(False)
            meter.decided(decision, runtime, chat)
            meter.done(outcome)
        timings.append((time.process_time() - started) / METER_BATCH * 1e6)
    return statistics.median(timings)


def _scrape_ms(server: Server) -> float:
    url = f"http://{HOST}:{server.port}/metrics"
    timings = []
    for _ in range(SCRAPES):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        timings.append((time.perf_counter() - started) * 1e3)
    return statistics.median(timings)


def table(metrics: dict[str, Any]) -> str:
    lines = [
        "| scenario | pass (order) | stub median ms | metrics off: added median ms "
        "| metrics on: added median ms | on − off ms | off p99 ms | on p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in metrics["scenarios"].values():
        for number, one in enumerate(row["passes"], 1):
            off, on = one["results"]["metrics-off"], one["results"]["metrics-on"]
            direct = one["results"]["direct"]
            order = " → ".join(name.removeprefix("metrics-") for name in one["order"])
            lines.append(
                f"| {row['label']} | {number} ({order}) | {direct['median_ms']:.3f} "
                f"| {off['added_median_ms']:+.3f} | {on['added_median_ms']:+.3f} "
                f"| {one['on_minus_off_ms']:+.3f} | {off['p99_ms']:.3f} "
                f"| {on['p99_ms']:.3f} | {off['errors'] + on['errors']} |"
            )
        lines.append(
            f"| {row['label']} | **mean of both** | | | | "
            f"**{row['metrics_added_median_ms']:+.3f}** | | | |"
        )
    meter = metrics["meter_us"]
    lines.append(
        f"\nCPU the meter spends per request, in-process: {meter['0']:.1f} µs (no rounds), "
        f"{meter['2']:.1f} µs (two rounds, five calls)."
    )
    lines.append(
        f"\nGET /metrics on the metrics-on server afterwards: median "
        f"{metrics['scrape_median_ms']:.2f} ms over {metrics['scrapes']} scrapes."
    )
    return "\n".join(lines)
