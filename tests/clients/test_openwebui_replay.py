"""Open WebUI's own requests (``tests/fixtures/openwebui``), replayed against ``perfics serve``
on the default policy with the real bundled models: the chat turns, which send 36 tools with
no ``tool_choice``, are answered in text without them (``x-perfics-tools: not-offered``), and
the title, tag and follow-up tasks answer as before. Every one is a 200."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "openwebui"
CAPTURES = sorted(FIXTURES.glob("*.json"))

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_the_fixtures_are_open_webuis_chat_with_its_tools() -> None:
    bodies = [json.loads(path.read_text())["body"] for path in CAPTURES]
    chats = [body for body in bodies if body.get("tools")]
    assert len(chats) == 2
    assert all(len(body["tools"]) == 36 for body in chats)
    assert all(body["stream"] and "tool_choice" not in body for body in chats)


@pytest.mark.parametrize("path", CAPTURES, ids=[path.stem for path in CAPTURES])
def test_every_request_open_webui_sends_is_answered(
    default_server: ServerProcess, path: Path
) -> None:
    capture = json.loads(path.read_text())
    body: dict[str, Any] = capture["body"]
    headers = {**capture["headers"], "Authorization": "Bearer sk-test"}
    with httpx.stream(
        capture["method"],
        f"{default_server.base_url}{capture['path']}",
        headers=headers,
        content=json.dumps(body),
        timeout=120,
    ) as response:
        raw = response.read().decode()
    assert response.status_code == 200, raw
    if body.get("tools"):
        assert response.headers["x-perfics-tools"] == "not-offered"
    else:
        assert "x-perfics-tools" not in response.headers
    if body.get("stream"):
        events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        text = "".join(
            choice["delta"].get("content") or "" for c in chunks for choice in c["choices"]
        )
        assert text.strip(), raw
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    else:
        message = json.loads(raw)["choices"][0]["message"]
        assert message["content"].strip()
