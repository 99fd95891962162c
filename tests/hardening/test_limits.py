"""What one client can do to the proxy: oversized, slow, deep or mistyped requests, too many
connections. Each answered in the envelope (or the connection closed), and the proxy keeps
serving."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

import httpx
import openai
import pytest

from tests.backends.conftest import Stub, label

from .conftest import STUB_POLICY, Served, write_policy

MESSAGES = [{"role": "user", "content": "Hello?"}]
CHAT = "/v1/chat/completions"


def post(server: Served, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"content-type": "application/json", **headers}
    return httpx.post(f"{server.base_url}{CHAT}", content=content, headers=sent, timeout=30)


def still_serves(server: Served) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="auto",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"X-Perfics-Max-Rounds": "0"},
    )
    assert reply.choices[0].message.content == "hello from stub"
    assert server.alive


def envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return error


def test_a_body_over_the_limit_is_413_before_it_is_read(served: Served) -> None:
    big = json.dumps({"model": "auto", "messages": MESSAGES, "pad": "x" * 200_000}).encode()
    envelope(post(served, big), 413, "request_too_large")
    still_serves(served)


def test_a_chunked_body_over_the_limit_is_413_while_reading(served: Served) -> None:
    def pieces() -> Any:
        yield b'{"model": "auto", "messages": [], "pad": "'
        for _ in range(40):
            yield b"x" * 4096
        yield b'"}'

    response = httpx.post(
        f"{served.base_url}{CHAT}",
        content=pieces(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    envelope(response, 413, "request_too_large")
    still_serves(served)


def raw(server: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_body_that_stalls_is_408_and_the_connection_closed(served: Served) -> None:
    with raw(served) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"model":'
        )
        reply = read_all(sock)  # returns once the proxy closes the connection
        waited = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408")
    assert b'"request_timeout"' in reply
    assert waited < 8
    still_serves(served)


def test_headers_that_never_finish_are_cut_off(served: Served) -> None:
    with raw(served) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        assert read_all(sock) == b""  # closed without an answer: there is no request yet
        assert time.monotonic() - started < 8
    with raw(served) as sock:  # a connection that sends nothing at all
        started = time.monotonic()
        assert read_all(sock) == b""
        assert time.monotonic() - started < 8
    still_serves(served)


def test_connections_beyond_the_cap_are_closed_at_once(served: Served) -> None:
    socks = [raw(served) for _ in range(30)]
    try:
        time.sleep(0.3)
        closed = 0
        for sock in socks:
            sock.settimeout(0.2)
            with contextlib.suppress(TimeoutError):  # open: waiting for its headers
                closed += sock.recv(1) == b""
        assert closed >= 10  # the cap is 20 open connections
    finally:
        for sock in socks:
            sock.close()
    # Closed by this side now; the server frees each as it reads the close (or at the
    # header deadline). Served again as soon as one is free: no fixed wait.
    deadline = time.monotonic() + 10
    while True:
        try:
            still_serves(served)
            break
        except openai.APIConnectionError:
            assert time.monotonic() < deadline, "the cap's connections were never freed"
            time.sleep(0.05)


def test_deep_nesting_is_400_too_deep(served: Served) -> None:
    nested: Any = "x"
    for _ in range(300):
        nested = [nested]
    body = {"model": "auto", "messages": MESSAGES, "some_extension": nested}
    error = envelope(post(served, body), 400, "too_deep")
    assert error["param"] == "some_extension"
    tools = {"model": "auto", "messages": MESSAGES, "tools": nested}
    assert envelope(post(served, tools), 400, "too_deep")["param"] == "tools"
    still_serves(served)


def test_only_json_bodies_are_accepted(served: Served) -> None:
    body = json.dumps({"model": "auto", "messages": MESSAGES}).encode()
    for kind in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = httpx.post(
            f"{served.base_url}{CHAT}", content=body, headers={"content-type": kind}
        )
        envelope(response, 415, "unsupported_content_type")
    assert post(served, body, **{"content-type": "application/json; charset=utf-8"}).is_success


def test_a_huge_model_name_is_not_echoed_whole(served: Served) -> None:
    body = {"model": "m" * 50_000, "messages": MESSAGES}
    error = envelope(post(served, body), 404, "model_not_found")
    assert len(error["message"]) < 300
    assert "50000 characters" in error["message"]
    task = post(served, {"model": "auto", "messages": MESSAGES}, **{"X-Perfics-Task": "t" * 5000})
    assert len(envelope(task, 400, "invalid_value")["message"]) < 300


def test_openai_spec_details(served: Served) -> None:
    response = post(
        served,
        {"model": "auto", "messages": MESSAGES, "max_tokens": 5},
        **{"X-Perfics-Max-Rounds": "0"},
    )
    body = response.json()
    assert body["choices"][0]["message"]["refusal"] is None
    assert isinstance(body["system_fingerprint"], str)
    assert body["system_fingerprint"]
    wrong = httpx.get(f"{served.base_url}{CHAT}")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert set(wrong.json()["error"]) == {"message", "type", "param", "code"}
    tool_turn = {
        "model": "auto",
        "messages": [
            {"role": "user", "content": "What's the weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
    }  # fmt: skip
    assert post(served, tool_turn, **{"X-Perfics-Max-Rounds": "0"}).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_no_request_content_in_the_log(served: Served, stream: bool) -> None:
    marker = "zebra-marker-5a1c"
    schema = {"type": "string", "pattern": marker, "enum": list(range(400))}
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": marker}],
        "stream": stream,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    envelope(post(served, body), 400, "invalid_schema")
    post(served, {"model": "auto", "messages": [{"role": "user", "content": marker}]})
    time.sleep(0.2)
    assert marker not in served.log_path.read_text()


def test_unknown_field_names_stay_out_of_the_debug_log(
    upstream: Stub, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A client's field names are its content: at debug level the log counts the unknown
    top-level fields it tolerated, and names none of them."""
    policy = write_policy(
        tmp_path_factory.mktemp("debug"),
        STUB_POLICY,
        api_base=upstream.url(label("ok")),
        max_body_bytes=65536,
    )
    server = Served(policy, env={"PERFICS_LOG_LEVEL": "debug"})
    try:
        body = {"model": "auto", "messages": MESSAGES, "zebra_5a1c": 1, "okapi_5a1c": {"x": 2}}
        assert post(server, body, **{"X-Perfics-Max-Rounds": "0"}).status_code == 200
    finally:
        server.stop()
    text = server.log_path.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    (unknown,) = [e for e in events if e["event"] == "request.unknown_fields"]
    assert "5a1c" not in text, unknown
    assert unknown["count"] == 2
