"""Latency and throughput: the stub direct, through perfics, through LiteLLM, interleaved.

For each scenario (non-streaming and streaming, at concurrency 1 and 16) every target gets a
warm-up, then ``rounds`` rounds of direct → perfics → LiteLLM, each round a slice of the
scenario's requests, so that drift on a shared machine hits all three alike. Latencies are
pooled over the rounds; requests/s is the requests answered over the summed wall time of the
target's slices; CPU per request is what the server process itself (``/proc/PID/stat``) spent
during its slices, divided by the requests.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchmarks.loadgen import LoadResult, Target, build_request, run_httpx, run_load
from benchmarks.processes import HOST, Server
from benchmarks.servers import MASTER_KEY, MODEL

PROMPT = [{"role": "user", "content": "Say hello in one short sentence."}]
HEADERS = {"authorization": f"Bearer {MASTER_KEY}"}
SLICE_TIME_LIMIT_S = 180.0


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    stream: bool
    concurrency: int
    requests: int
    warmup: int

    @property
    def key(self) -> str:
        return f"{'stream' if self.stream else 'json'}-c{self.concurrency}"

    def body(self) -> bytes:
        body: dict[str, Any] = {"model": MODEL, "messages": PROMPT, "max_tokens": 16}
        if self.stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return orjson.dumps(body)

    @property
    def expect(self) -> bytes:
        return b"[DONE]" if self.stream else b"fixed answer"


def scenarios(*, quick: bool) -> list[Scenario]:
    scale = 4 if quick else 1
    return [
        Scenario("non-streaming", False, 1, 400 // scale, 100),
        Scenario("non-streaming", False, 16, 2000 // scale, 320),
        Scenario("streaming", True, 1, 400 // scale, 100),
        Scenario("streaming", True, 16, 2000 // scale, 320),
    ]


@dataclass(slots=True)
class Samples:
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    errors: int = 0
    timed_out: bool = False
    first_error: str | None = None

    def add(self, result: LoadResult, cpu_s: float) -> None:
        self.latencies_s += result.latencies_s
        self.wall_s += result.wall_s
        self.cpu_s += cpu_s
        self.errors += result.errors
        self.timed_out |= result.timed_out
        self.first_error = self.first_error or result.first_error

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)
        count = len(ordered)
        return {
            "requests": count,
            "errors": self.errors,
            "timed_out": self.timed_out,
            "first_error": self.first_error,
            "median_ms": statistics.median(ordered) * 1e3 if ordered else None,
            "p99_ms": ordered[max(0, int(count * 0.99) - 1)] * 1e3 if ordered else None,
            "rps": count / self.wall_s if self.wall_s else None,
            "server_cpu_us_per_request": self.cpu_s / count * 1e6 if count else None,
        }


async def measure(
    servers: dict[str, Server],
    scenario: Scenario,
    rounds: int,
    headers: dict[str, dict[str, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run one scenario over every target in ``servers`` (direct first), interleaved; each
    target sends ``headers[name]`` when given, else the master key."""
    requests = {
        name: build_request(
            Target(HOST, server.port), scenario.body(), (headers or {}).get(name, HEADERS)
        )
        for name, server in servers.items()
    }

    async def run(name: str, total: int) -> tuple[LoadResult, float]:
        server = servers[name]
        cpu_before = server.cpu_s()
        result = await run_load(
            Target(HOST, server.port),
            requests[name],
            total=total,
            concurrency=scenario.concurrency,
            expect=scenario.expect,
            time_limit_s=SLICE_TIME_LIMIT_S,
        )
        return result, server.cpu_s() - cpu_before

    for name in servers:
        await run(name, scenario.warmup)
    samples = {name: Samples() for name in servers}
    per_round = max(scenario.concurrency, scenario.requests // rounds)
    for _ in range(rounds):
        for name in servers:
            samples[name].add(*await run(name, per_round))
    results = {name: s.summary() for name, s in samples.items()}
    direct = results["direct"]
    for name, summary in results.items():
        if name == "direct" or summary["median_ms"] is None:
            continue
        summary["added_median_ms"] = summary["median_ms"] - direct["median_ms"]
        summary["added_p99_ms"] = summary["p99_ms"] - direct["p99_ms"]
    return results


async def generator_ceiling(stub: Server, requests: int) -> dict[str, Any]:
    """What the load generators themselves can drive: raw sockets and httpx, against the stub,
    non-streaming at concurrency 16."""
    scenario = Scenario("non-streaming", False, 16, requests, 0)
    target = Target(HOST, stub.port)
    raw = await run_load(
        target,
        build_request(target, scenario.body(), HEADERS),
        total=requests,
        concurrency=16,
        expect=scenario.expect,
        time_limit_s=60,
    )
    via_httpx = await run_httpx(
        target,
        scenario.body(),
        {"content-type": "application/json", **HEADERS},
        total=requests // 4,
        concurrency=16,
        stream=False,
        time_limit_s=60,
    )
    return {
        "raw_sockets_rps": len(raw.latencies_s) / raw.wall_s,
        "httpx_rps": len(via_httpx.latencies_s) / via_httpx.wall_s,
    }
