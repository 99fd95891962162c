"""Figures for the hostile-input defects, measured on any checkout of perfics side by side.

    python -m benchmarks.hardening_figures [--root DIR]

Starts ``perfics serve`` from ``--root`` (default: this checkout) in front of the test suite's
stub upstream, then measures, with raw sockets and the official SDK:

- peak RSS growth of the proxy while a 200 MB body arrives, and the status it answers;
- how long a request that announces 100,000 body bytes and sends 9 stays open (capped at 45 s);
- the status for a tool definition nested 300 levels deep;
- 50 concurrent budgeted requests (1-3 choices, streamed and not) against an upstream that
  ignores ``max_tokens``: the largest cost / budget ratio among answered requests.

The policy has no ``server:`` section, so older checkouts load it too; every figure is what
that checkout does by default. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

HERE = Path(__file__).resolve().parents[1]
STUB = HERE / "tests" / "backends" / "stub_upstream.py"
POLICY = """
version: 1
default_task: general
refinement: {{critique_max_tokens: 20, template_tokens: 30}}
tasks:
  general: {{max_rounds: 2, answer_tokens: 40}}
models:
  - id: up
    backend: openai
    model: stub
    api_base: "{api_base}"
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality: {{default: [5.0, 6.0, 6.5]}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url}: not up in {timeout} s")


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def big_body(port: int, pid: int) -> dict[str, Any]:
    before = rss_kib(pid, "VmRSS")
    peak = before
    size = 200 * 1024 * 1024
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    status = "closed"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        chunk = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
                if sent % (16 << 20) == 0:
                    peak = max(peak, rss_kib(pid, "VmRSS"))
        except OSError:
            pass
        peak = max(peak, rss_kib(pid, "VmRSS"))
        sock.settimeout(30)
        try:
            reply = sock.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
            status = reply or "closed"
        except OSError:
            pass
    return {"status": status, "rss_growth_mib": round((peak - before) / 1024, 1)}


def half_sent(port: int) -> dict[str, Any]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"model":'
        )
        sock.settimeout(45)
        try:
            reply = sock.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
        except TimeoutError:
            reply = "still open"
    return {"answer": reply or "closed", "seconds": round(time.monotonic() - started, 1)}


def deep(base: str) -> dict[str, Any]:
    nested: Any = {"type": "string"}
    for _ in range(300):
        nested = {"type": "object", "properties": {"a": nested}}
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": nested}}],
    }
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30)
    return {"status": reply.status_code}


async def budgets(base: str) -> dict[str, Any]:
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=60)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Tell me about tides, at length."}
    ]
    rng = random.Random(7)

    async def one(budget: float, n: int, stream: bool) -> tuple[float, Decimal | None]:
        headers = {"X-Perfics-Budget-Usd": f"{budget:.9f}"}
        try:
            if stream:
                cost = None
                async for chunk in await client.chat.completions.create(
                    model="auto",
                    messages=messages,
                    n=n,
                    stream=True,
                    extra_headers=headers,
                ):
                    extra = chunk.model_extra or {}
                    if "perfics" in extra:
                        cost = Decimal(str(extra["perfics"]["cost_usd"]))
                return budget, cost
            raw = await client.chat.completions.with_raw_response.create(
                model="auto",
                messages=messages,
                n=n,
                extra_headers=headers,
            )
            return budget, Decimal(raw.headers["x-perfics-cost-usd"])
        except openai.APIError:
            return budget, None

    jobs = [
        one(rng.uniform(50e-6, 1500e-6), rng.choice((1, 1, 2, 3)), rng.random() < 0.4)
        for _ in range(50)
    ]
    results = await asyncio.gather(*jobs)
    await client.close()
    answered = [(b, c) for b, c in results if c is not None]
    ratio = max((float(c) / b for b, c in answered), default=0.0)
    over = sum(1 for b, c in answered if float(c) > b)
    return {"answered": len(answered), "over_budget": over, "max_cost_over_budget": round(ratio, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hardening_figures")
    parser.add_argument("--root", default=str(HERE), help="the checkout whose proxy to start")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    stub_port, port = free_port(), free_port()
    stub = subprocess.Popen(
        [sys.executable, str(STUB), "--port", str(stub_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(
            POLICY.format(api_base=f"http://127.0.0.1:{stub_port}/greedy400-figures/v1")
        )
        command = [sys.executable, "-m", "proxy.cli", "serve", "--policy", str(policy)]
        proxy = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            cwd=root,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait(f"http://127.0.0.1:{stub_port}/stats", stub)
            wait(f"{base}/healthz", proxy)
            figures = {
                "root": str(root),
                "body_200_mib": big_body(port, proxy.pid),
                "half_sent_request": half_sent(port),
                "nested_300": deep(base),
                "budgets_50_concurrent": asyncio.run(budgets(base)),
                "alive": proxy.poll() is None,
            }
        finally:
            for process in (proxy, stub):
                process.terminate()
                process.wait(timeout=10)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
