"""Memory: the resident set of ``perfics serve`` with a policy that loads no model (the stub
behind ``backend: openai``), when ready and after ``requests`` non-streaming requests at
concurrency 16, sampled every ``requests // 4``; ``VmRSS`` from ``/proc/PID/status``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.latency import HEADERS, Scenario
from benchmarks.loadgen import Target, build_request, run_load
from benchmarks.processes import HOST, Server
from benchmarks.servers import perfics_policy, start_perfics


async def run(stub: Server, workdir: Path, requests: int) -> dict[str, Any]:
    proxy = start_perfics(perfics_policy(stub.port), workdir)
    try:
        start_mb = proxy.rss_mb()
        scenario = Scenario("non-streaming", False, 16, requests, 0)
        target = Target(HOST, proxy.port)
        raw = build_request(target, scenario.body(), HEADERS)
        samples = [{"requests": 0, "rss_mb": start_mb}]
        errors = 0
        step = requests // 4
        for done in range(step, requests + 1, step):
            result = await run_load(
                target, raw, total=step, concurrency=16, expect=scenario.expect, time_limit_s=300
            )
            errors += result.errors
            samples.append({"requests": done, "rss_mb": proxy.rss_mb()})
    finally:
        proxy.stop()
    end_mb = samples[-1]["rss_mb"]
    return {
        "start_mb": start_mb,
        "end_mb": end_mb,
        "growth_pct": (end_mb - start_mb) / start_mb * 100,
        "requests": requests,
        "errors": errors,
        "samples": samples,
    }
