"""A tiny OpenAI-compatible upstream for error paths a real server cannot produce on demand.

    python tests/backends/stub_upstream.py --port 8123

The first path segment picks the behaviour and names the counters: ``/{behaviour}-{tag}/v1/...``
(``tag`` is free, so each test counts its own requests). Behaviours:

    ok          a fixed reply; streamed as three chunks, a finish chunk and a usage chunk
    nousage     like ok, but the stream has no usage chunk
    tools       a tool call (streamed in fragments)
    slow{s}     ok after ``s`` seconds
    hold        ok once the test releases the label (``POST /release/{label}``; a minute at
                most): answers that wait until a test has seen every request it expects
    endless     a stream of one chunk every 20 ms until the client goes away
    e{status}   an OpenAI error body with that status (e500, e400, e401, e429)
    badjson     200 with a body that is not JSON
    wait{n}     ok; ``/metrics`` reports ``n`` vLLM requests waiting
    drop        reads the request, then closes the connection without a word (a replica that
                dies mid-request)
    okthen{n}   ok for the label's first ``n`` requests, then e503 (a server that goes down
                between the calls of one refined request)
    greedy{n}   ignores ``max_tokens``: ``n`` one-token words, with usage that says so (a
                server whose answers a budget cannot trust)
    oneonly     ok, but one choice whatever ``n`` asks (a server that ignores ``n``)
    non         ok, but 400 to a request with ``n`` above 1 (a server that refuses ``n``)

A non-streaming request with ``n`` above 1 gets ``n`` choices (from ``ok`` and the behaviours
built on it): choice ``i`` says the fixed reply followed by `` #i`` (choice 0 is the fixed reply
itself), and the usage counts the prompt once and every choice's tokens.

Under any behaviour that answers, ``.../v1/embeddings`` gives one vector per input
(``[characters, 1, index]``) and ``.../v1/completions`` a legacy text completion of the same
words (streamed or not).

``GET /stats`` returns, per label: requests, concurrent, max_concurrent, disconnects,
last_auth (the Authorization header), last_request_id (X-Request-Id), last_body, and the ``n``
and ``seed`` of every request in order (``ns``, ``seeds``).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATS: dict[str, dict[str, Any]] = {}
LOCK = threading.Lock()
RELEASED: dict[str, threading.Event] = {}
HOLD_S = 60.0
USAGE: dict[str, Any] = {
    "prompt_tokens": 7,
    "completion_tokens": 3,
    "total_tokens": 10,
    "prompt_tokens_details": {"cached_tokens": 4},
}
WORDS = ["hello", " from", " stub"]
TOOL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}


def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "c", "object": "chat.completion.chunk", "model": "stub", "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/stats":
            with LOCK:
                return self.send(200, json.dumps(STATS).encode())
        label = self.path.strip("/").split("/")[0]
        if self.path.endswith("/metrics") and label.startswith("wait"):
            waiting = label[4:].split("-")[0]
            text = (
                "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
                f'vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}.0\n'
                'vllm:num_requests_running{engine="0",model_name="m"} 1.0\n'
            )
            return self.send(200, text.encode(), "text/plain")
        if self.path.endswith("/models"):
            return self.send(200, b'{"object": "list", "data": []}')
        self.send(404, b'{"error": {"message": "no such path"}}')

    def do_POST(self) -> None:
        label = self.path.strip("/").split("/")[0]
        if label == "release":
            self.released(self.path.strip("/").split("/")[1]).set()
            return self.send(200, b"{}")
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with LOCK:
            stats = STATS.setdefault(
                label, {"requests": 0, "concurrent": 0, "max_concurrent": 0, "disconnects": 0}
            )
            stats["requests"] += 1
            stats["concurrent"] += 1
            stats["max_concurrent"] = max(stats["max_concurrent"], stats["concurrent"])
            stats["last_auth"] = self.headers.get("authorization")
            stats["last_request_id"] = self.headers.get("x-request-id")
            stats["last_body"] = body
            stats.setdefault("ns", []).append(body.get("n"))
            stats.setdefault("seeds", []).append(body.get("seed"))
        try:
            if label.split("-")[0] == "hold":
                self.released(label).wait(HOLD_S)
            self.answer(label.split("-")[0], body, stats["requests"])
        except (BrokenPipeError, ConnectionResetError):
            with LOCK:
                stats["disconnects"] += 1
            self.close_connection = True
        finally:
            with LOCK:
                stats["concurrent"] -= 1

    @staticmethod
    def released(label: str) -> threading.Event:
        with LOCK:
            return RELEASED.setdefault(label, threading.Event())

    def answer(self, behaviour: str, body: dict[str, Any], nth: int) -> None:
        if (match := re.fullmatch(r"okthen(\d+)", behaviour)) and nth > int(match[1]):
            behaviour = "e503"
        if match := re.fullmatch(r"e(\d{3})", behaviour):
            error = {"error": {"message": f"stub says {match[1]}", "type": "invalid_request_error"}}
            return self.send(int(match[1]), json.dumps(error).encode())
        n = int(body.get("n") or 1)
        if behaviour == "non" and n > 1:
            error = {"error": {"message": "n must be 1", "type": "invalid_request_error"}}
            return self.send(400, json.dumps(error).encode())
        if behaviour == "oneonly":
            n = 1
        if behaviour == "badjson":
            return self.send(200, b"{not json")
        if behaviour == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if self.path.endswith("/embeddings"):
            return self.embeddings(body)
        if self.path.endswith("/v1/completions"):
            return self.text_completion(body)
        words = WORDS
        usage = USAGE
        if match := re.fullmatch(r"greedy(\d+)", behaviour):
            words = [" w"] * int(match[1])
            prompt = sum(len(str(m.get("content") or "")) // 4 + 4 for m in body["messages"])
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": len(words),
                "total_tokens": prompt + len(words),
            }
        if behaviour.startswith("slow"):
            time.sleep(float(behaviour[4:]))
        tools = behaviour == "tools"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(words)}
            if tools:
                message |= {"content": None, "tool_calls": [TOOL]}
            choices = [
                {
                    "index": i,
                    "message": message
                    if not i
                    else {**message, "content": f"{''.join(words)} #{i}"},
                    "finish_reason": "tool_calls" if tools else "stop",
                }
                for i in range(n)
            ]
            if n > 1:
                completion = usage["completion_tokens"] * n
                usage = {
                    **usage,
                    "completion_tokens": completion,
                    "total_tokens": usage["prompt_tokens"] + completion,
                }
            reply = {"id": "c", "object": "chat.completion", "choices": choices, "usage": usage}
            return self.send(200, json.dumps(reply).encode())
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if behaviour == "endless":
            while True:
                self.write_chunk(chunk({"content": "x"}))
                time.sleep(0.02)
        if tools:
            first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
            self.write_chunk(chunk({"tool_calls": [first]}))
            for part in ('{"x"', ": 1}"):
                self.write_chunk(
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                )
            self.write_chunk(chunk({}, "tool_calls"))
        else:
            for word in words:
                self.write_chunk(chunk({"content": word}))
            self.write_chunk(chunk({}, "stop"))
        if behaviour != "nousage":
            self.write_chunk(chunk(None, usage=usage))
        self.write_chunk(b"data: [DONE]\n\n")
        self.write_chunk(b"")

    def embeddings(self, body: dict[str, Any]) -> None:
        """One vector per input, ``[characters, 1, index]``, listed in reverse order (OpenAI
        does not promise the order; ``index`` says it)."""
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0, float(i)]}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(text) // 4 + 1 for text in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        reply = {"object": "list", "data": data[::-1], "model": "stub", "usage": usage}
        self.send(200, json.dumps(reply).encode())

    def text_completion(self, body: dict[str, Any]) -> None:
        """A legacy text completion: the stub's words, streamed as ``text_completion``
        chunks with a usage chunk, or whole."""
        words = WORDS
        if not body.get("stream"):
            choice = {"index": 0, "text": "".join(words), "finish_reason": "stop"}
            reply = {"object": "text_completion", "choices": [choice], "usage": USAGE}
            return self.send(200, json.dumps(reply).encode())
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for word, finish in [*((w, None) for w in words), ("", "stop")]:
            piece = {"index": 0, "text": word, "finish_reason": finish}
            data = {"object": "text_completion", "choices": [piece]}
            self.write_chunk(b"data: " + json.dumps(data).encode() + b"\n\n")
        usage = {"object": "text_completion", "choices": [], "usage": USAGE}
        self.write_chunk(b"data: " + json.dumps(usage).encode() + b"\n\n")
        self.write_chunk(b"data: [DONE]\n\n")
        self.write_chunk(b"")
        return None

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def send(self, status: int, data: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    server = ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Handler)
    server.daemon_threads = True
    server.serve_forever()
