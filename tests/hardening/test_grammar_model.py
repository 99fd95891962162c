"""Client JSON Schemas against the real embedded model, in a proxy whose address space is
capped (``limit_address_space``): a schema that once grew the process until the kernel killed
it must now be a quick 400, and nothing the client sent may reach the log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import POLICIES

from .conftest import Served, limit_address_space

pytestmark = pytest.mark.model
MARKER = "quokka-7f3e"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    policy = tmp_path_factory.mktemp("grammar") / "policy.yaml"
    policy.write_text((POLICIES / "smollm2.yaml").read_text())
    server = Served(policy, preexec=limit_address_space(3.0))
    yield server
    server.stop()


def ask(server: Served, schema: Any) -> httpx.Response:
    body = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": f"Give me JSON. {MARKER}"}],
        "max_tokens": 24,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "integer"}, "minItems": 1_000_000_000},
        {"enum": [f"value-{i}" for i in range(20_000)]},
        {"type": "nonsense", "description": MARKER},
        {"$ref": "#"},
        # within the bounds, but llama.cpp's converter refuses it: still the client's 400
        {"type": "string", "pattern": f"{MARKER}[0-9]+"},
    ],
)
def test_unusable_schemas_are_400_at_once(embedded: Served, schema: Any) -> None:
    started = time.monotonic()
    response = ask(embedded, schema)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "response_format"
    assert error["code"] == "invalid_schema"
    assert time.monotonic() - started < 5
    assert embedded.alive


def test_a_bounded_schema_is_served_and_nothing_sent_is_logged(embedded: Served) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
    }
    response = ask(embedded, schema)
    assert response.status_code == 200, response.text
    parsed = json.loads(response.json()["choices"][0]["message"]["content"])
    assert set(parsed) == {"city"}
    time.sleep(0.2)
    log = Path(embedded.log_path).read_text()
    assert "request.done" in log
    assert MARKER not in log
