"""A minimal, fast OpenAI-compatible upstream: fixed answers, no model, raw asyncio on uvloop.

    python -m benchmarks.stub --port 8123

``POST .../chat/completions`` answers a fixed ``chat.completion``, or, when the body asks for
``"stream": true``, a fixed SSE stream (a role chunk, ``STREAM_PIECES`` content chunks, a
finish chunk, a usage chunk and ``[DONE]``), written at once as HTTP/1.1 chunked transfer.
``GET /health`` answers ``{"status": "ok"}``; ``GET /stats`` the number of chat requests seen.
Anything else is a 404. Keep-alive connections; requests are parsed by hand (request line,
``content-length``), which is all a benchmark client, httpx or LiteLLM sends.

It is a protocol, not a framework, so that it serves many times what the proxies in front of
it can (the benchmark measures and reports its ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import Any, cast

USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
STREAM_PIECES = ["Hello", " from", " the", " stub", " upstream", ",", " a", " fixed", " answer."]
_STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')


def _completion() -> bytes:
    body = {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(STREAM_PIECES)},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": USAGE,
    }
    return _response(200, json.dumps(body).encode())


def _chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "stub",
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    event = b"data: " + json.dumps(body).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _stream() -> bytes:
    def delta(content: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}

    events = [_chunk([delta({"role": "assistant", "content": ""})])]
    events += [_chunk([delta({"content": piece})]) for piece in STREAM_PIECES]
    events.append(_chunk([delta({}, "stop")]))
    events.append(_chunk([], USAGE))
    done = b"data: [DONE]\n\n"
    events.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    return head + b"".join(events)


def _response(status: int, body: bytes) -> bytes:
    reason = {200: b"OK", 404: b"Not Found"}[status]
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )


COMPLETION = _completion()
STREAM = _stream()
HEALTH = _response(200, b'{"status": "ok"}')
NOT_FOUND = _response(404, b'{"error": {"message": "not found"}}')


class StubProtocol(asyncio.Protocol):
    """One client connection: requests in, fixed responses out, in order."""

    requests = 0

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            length = 0
            if (at := head.find(b"content-length:")) >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            assert self.transport is not None
            self.transport.write(self.answer(head, body))
            if b"connection: close" in head:
                self.transport.close()
                return

    def answer(self, head: bytes, body: bytes) -> bytes:
        target = head.split(b" ", 2)[1]
        if head.startswith(b"post") and target.endswith(b"/chat/completions"):
            StubProtocol.requests += 1
            return STREAM if _STREAM_FLAG.search(body) else COMPLETION
        if target == b"/health":
            return HEALTH
        if target == b"/stats":
            return _response(200, b'{"requests": %d}' % StubProtocol.requests)
        return NOT_FOUND


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StubProtocol, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="a fixed-answer OpenAI-compatible upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
