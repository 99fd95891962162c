"""What ``OpenAICompatBackend`` adds to a call, and what a dead first replica costs.

Starts the stub upstream (``tests/backends/stub_upstream.py``) on loopback, then

1. overhead: ``--requests`` sequential non-streaming calls through ``backend.complete()`` and
   as many with a plain ``httpx.AsyncClient`` POST + JSON decode, interleaved one by one, after
   a warm-up; prints the median and p90 of each and the difference of the medians;
2. dead replica: ``--trials`` fresh backends, each with a refused port first in its replica
   list and the stub second, timing the first call (which tries the dead port, marks it down
   and moves on), against fresh backends with only the stub; prints the medians.

    .venv/bin/python -m benchmarks.backend_overhead [--requests 500] [--trials 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import structlog

from proxy.backends.base import SamplingParams
from proxy.backends.openai_compat import OpenAICompatBackend
from routing.policy import ModelSpec, OpenAIOptions

STUB = Path(__file__).resolve().parent.parent / "tests" / "backends" / "stub_upstream.py"
MESSAGES = [{"role": "user", "content": "Say hello."}]
PARAMS = SamplingParams(max_tokens=16, temperature=0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec(*bases: str) -> ModelSpec:
    return ModelSpec(
        id="bench",
        backend="openai",
        model="stub",
        api_base=bases,
        context_window=2048,
        options=OpenAIOptions(retry_down_after_s=600.0),
    )


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"median {statistics.median(ordered) * 1e3:.3f} ms, p90 {p90 * 1e3:.3f} ms"


async def overhead(base: str, requests: int) -> None:
    url = f"{base}/chat/completions"
    body = orjson.dumps(
        {"model": "stub", "messages": MESSAGES, "max_tokens": 16, "temperature": 0.0}
    )
    backend = OpenAICompatBackend(spec(base))
    await backend.start()
    direct: list[float] = []
    proxied: list[float] = []
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(headers=headers) as client:
        for _ in range(50):
            (await client.post(url, content=body)).json()
            await backend.complete(MESSAGES, PARAMS)
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.post(url, content=body)
            response.raise_for_status()
            response.json()
            direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            await backend.complete(MESSAGES, PARAMS)
            proxied.append(time.perf_counter() - started)
    await backend.aclose()
    added = statistics.median(proxied) - statistics.median(direct)
    print(f"direct httpx      ({requests}): {ms(direct)}")
    print(f"backend.complete  ({requests}): {ms(proxied)}")
    print(f"added by the backend (median): {added * 1e3:.3f} ms")


async def first_call(*bases: str) -> float:
    backend = OpenAICompatBackend(spec(*bases))
    await backend.start()
    try:
        started = time.perf_counter()
        await backend.complete(MESSAGES, PARAMS)
        return time.perf_counter() - started
    finally:
        await backend.aclose()


async def dead_replica(base: str, trials: int) -> None:
    healthy: list[float] = []
    with_dead: list[float] = []
    for _ in range(trials):
        healthy.append(await first_call(base))
        with_dead.append(await first_call(f"http://127.0.0.1:{free_port()}/v1", base))
    cost = statistics.median(with_dead) - statistics.median(healthy)
    print(f"first call, stub only     ({trials}): {ms(healthy)}")
    print(f"first call, dead port 1st ({trials}): {ms(with_dead)}")
    print(f"cost of the dead first replica (median, refused connection): {cost * 1e3:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, str(STUB), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/stats", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}/ok-bench/v1"
        asyncio.run(overhead(base, args.requests))
        asyncio.run(dead_replica(base, args.trials))
    finally:
        stub.terminate()
        stub.wait(timeout=10)


if __name__ == "__main__":
    main()
