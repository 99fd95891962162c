"""Bad input gets OpenAI's error envelope with the right status and ``param`` — never FastAPI's
422 — and the server keeps serving after each one. Driven through the official SDK against the
real ``perfics serve`` process (validation happens before any model call)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ServerProcess

GOOD = [{"role": "user", "content": "Say hi."}]


def raw_post(server: ServerProcess, body: bytes | dict[str, Any]) -> httpx.Response:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(
        f"{server.base_url}/v1/chat/completions",
        timeout=30,
        headers={"content-type": "application/json"},
        **kwargs,
    )


def assert_envelope(
    response: httpx.Response, status: int, param: str | None, code: str | None = None
) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["message"]
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "auto"}, "messages"),
        ({"model": "auto", "messages": []}, "messages"),
        ({"messages": GOOD}, "model"),
        ({"model": "auto", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "auto", "messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": "auto", "messages": "hello"}, "messages"),
        ({"model": "auto", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "auto", "messages": GOOD, "max_tokens": 0}, "max_tokens"),
        ({"model": "auto", "messages": GOOD, "max_tokens": -5}, "max_tokens"),
        ({"model": "auto", "messages": GOOD, "max_tokens": "ten"}, "max_tokens"),
        ({"model": "auto", "messages": GOOD, "max_completion_tokens": 0}, "max_completion_tokens"),
        ({"model": "auto", "messages": GOOD, "temperature": 2.5}, "temperature"),
        ({"model": "auto", "messages": GOOD, "temperature": -0.1}, "temperature"),
        ({"model": "auto", "messages": GOOD, "top_p": 1.5}, "top_p"),
        ({"model": "auto", "messages": GOOD, "n": 0}, "n"),
        ({"model": "auto", "messages": GOOD, "n": 100}, "n"),
        ({"model": "auto", "messages": GOOD, "stream": "yes"}, "stream"),
        ({"model": "auto", "messages": GOOD, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_invalid_requests_are_400_with_param(
    model_server: ServerProcess, body: dict[str, Any], param: str
) -> None:
    assert_envelope(raw_post(model_server, body), 400, param)


def test_malformed_json_is_400(model_server: ServerProcess) -> None:
    assert_envelope(
        raw_post(model_server, b'{"model": "auto", "messages": ['), 400, None, "invalid_json"
    )
    assert_envelope(raw_post(model_server, b"[1, 2]"), 400, None, "invalid_json")


def test_unknown_model_is_404_model_not_found(model_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{model_server.base_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=GOOD)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"
    assert info.value.body["param"] == "model"  # type: ignore[index]


def test_sdk_sees_bad_request_errors(model_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{model_server.base_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=GOOD, temperature=3)  # type: ignore[arg-type]
    assert info.value.body["param"] == "temperature"  # type: ignore[index]


def test_unknown_fields_are_tolerated_and_server_keeps_serving(model_server: ServerProcess) -> None:
    for body in ({"model": "auto"}, b"nope", {"model": "x", "messages": GOOD}):
        assert raw_post(model_server, body).status_code in (400, 404)
    response = raw_post(
        model_server,
        {
            "model": "auto",
            "messages": GOOD,
            "max_tokens": 2,
            "temperature": 0,
            "some_new_field": {"x": 1},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


def test_unknown_route_and_method_use_the_envelope(model_server: ServerProcess) -> None:
    missing = httpx.get(f"{model_server.base_url}/v1/nothing-here")
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    wrong = httpx.get(f"{model_server.base_url}/v1/chat/completions")
    assert wrong.status_code == 405
    assert "error" in wrong.json()
