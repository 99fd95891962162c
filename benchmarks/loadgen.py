"""A lean HTTP/1.1 load generator: raw asyncio connections, one prepared request, timings.

``run_load`` opens ``concurrency`` keep-alive connections and sends ``total`` copies of one
prepared request over them (each connection sends its next request when the previous answer
is complete), timing each request from the write to the last byte of the answer. An answer
with a ``content-length`` is complete at that length; a chunked one at its terminal chunk.
A non-200 answer, or one without ``expect`` in its body, counts as an error; a dropped
connection is reopened. Nothing is parsed beyond what framing needs, so the generator costs
the machine little CPU (its ceiling against the stub is measured and reported).

``run_httpx`` does the same with one pooled ``httpx.AsyncClient``, for comparison only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str = "/v1/chat/completions"


@dataclass(slots=True)
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    timed_out: bool = False
    first_error: str | None = None


def build_request(target: Target, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"host: {target.host}:{target.port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.buffer.clear()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answer = _complete_answer(self.buffer)
        if answer is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(answer)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _complete_answer(buffer: bytearray) -> tuple[int, bytes] | None:
    """``(status, body)`` once ``buffer`` holds a whole response, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    start = end + 4
    if (at := head.find(b"content-length:")) >= 0:
        line_end = head.find(b"\r\n", at)
        length = int(head[at + 15 : line_end if line_end >= 0 else None])
        if len(buffer) < start + length:
            return None
        return status, bytes(buffer[start : start + length])
    if b"transfer-encoding: chunked" in head:
        return (status, bytes(buffer[start:])) if _chunked_done(buffer, start) else None
    raise ValueError("an answer with neither content-length nor chunked transfer")


def _chunked_done(buffer: bytearray, position: int) -> bool:
    """True when the chunked body starting at ``position`` has reached its terminal chunk."""
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return False
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        if size == 0:
            return buffer.find(b"\r\n", line_end + 2) >= 0
        position = line_end + 2 + size + 2
        if position > len(buffer):
            return False


async def run_load(
    target: Target,
    raw_request: bytes,
    *,
    total: int,
    concurrency: int,
    expect: bytes,
    time_limit_s: float,
) -> LoadResult:
    """Send ``total`` requests over ``concurrency`` connections; stop early at the time limit."""
    loop = asyncio.get_running_loop()
    result = LoadResult()
    remaining = total
    deadline = time.monotonic() + time_limit_s

    async def connect() -> _Connection:
        _, protocol = await loop.create_connection(_Connection, target.host, target.port)
        return protocol

    async def worker() -> None:
        nonlocal remaining
        connection = await connect()
        try:
            while remaining > 0:
                if time.monotonic() > deadline:
                    result.timed_out = True
                    return
                remaining -= 1
                if connection.lost:
                    connection = await connect()
                started = time.perf_counter()
                try:
                    status, body = await connection.request(raw_request)
                except ConnectionError as exc:
                    result.errors += 1
                    result.first_error = result.first_error or str(exc)
                    continue
                elapsed = time.perf_counter() - started
                if status != 200 or expect not in body:
                    result.errors += 1
                    result.first_error = result.first_error or f"{status}: {body[:200]!r}"
                    continue
                result.latencies_s.append(elapsed)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


async def run_httpx(
    target: Target,
    body: bytes,
    headers: dict[str, str],
    *,
    total: int,
    concurrency: int,
    stream: bool,
    time_limit_s: float,
) -> LoadResult:
    """The same load through one pooled ``httpx.AsyncClient`` (to measure httpx's ceiling)."""
    import httpx

    result = LoadResult()
    remaining = total
    deadline = time.monotonic() + time_limit_s
    url = f"http://{target.host}:{target.port}{target.path}"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                started = time.perf_counter()
                if stream:
                    async with client.stream("POST", url, content=body) as response:
                        async for _ in response.aiter_bytes():
                            pass
                else:
                    response = await client.post(url, content=body)
                if response.status_code != 200:
                    result.errors += 1
                    continue
                result.latencies_s.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    result.timed_out = remaining > 0
    return result
