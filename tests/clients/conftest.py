"""Real clients in front of perfics: the default policy on the real bundled models in a
``perfics serve`` process (``default_server``), and a tools-capable scripted model behind a
real uvicorn server (``tools_service``) where a test needs a model that calls tools on cue.

``Recorder`` keeps the bodies a client sent, through event hooks on the client's own HTTP
client (``httpx2``, which the openai SDK 3 is built on), so a test can say what a library
sends as well as what it got back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from proxy.backends.base import Completion
from proxy.backends.scripted import ScriptedBackend
from proxy.results import Usage
from tests.conftest import ROOT, InProcessServer, ServerProcess

TOOLS_POLICY = """
version: 1
default_task: general
reference_model: {id: gpt-4o, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10.0}
tasks:
  general: {max_rounds: 0, answer_tokens: 200}
aliases:
  gpt-4o: {}
  {extra_alias}: {}
models:
  - id: toolsmith
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 8192
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    capabilities: [tools, json_schema]
    quality: {default: [6.0]}
"""


def tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> Completion:
    """A scripted reply that calls one function."""
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return Completion("", "tool_calls", Usage(40, 12), tool_calls=(call,))


class ToolsService:
    """One tools-capable scripted model (``model``) behind a real server on 127.0.0.1, with a
    fresh SQLite store; ``extra_alias`` is one more model name the policy accepts."""

    def __init__(self, tmp_path: Path, extra_alias: str = "gpt-4o-mini") -> None:
        policy = tmp_path / "tools-policy.yaml"
        policy.write_text(TOOLS_POLICY.replace("{extra_alias}", extra_alias))
        self.model = ScriptedBackend("toolsmith")
        self.server = InProcessServer(
            policy,
            {"toolsmith": self.model},
            database_url=f"sqlite:///{tmp_path / 'store.db'}",
            keepalive_s=0.05,
        )
        self.base_url = self.server.base_url

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def tools_service(tmp_path: Path) -> Iterator[ToolsService]:
    service = ToolsService(tmp_path)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``perfics serve --policy policies/default.yaml``: the two bundled models, no tools
    capability, as a new user runs it (its own store; ``info`` logs for the headers' story)."""
    store = tmp_path_factory.mktemp("default-server") / "store.db"
    server = ServerProcess(
        ROOT / "policies" / "default.yaml",
        {"PERFICS_DATABASE_URL": f"sqlite:///{store}"},
        log_level="info",
    )
    yield server
    server.stop()


class Recorder:
    """The requests a client sent (method, path, JSON body) and the answers' statuses and
    headers, recorded by httpx event hooks on the client's own HTTP client."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.responses: list[tuple[int, httpx2.Headers]] = []

    def on_request(self, request: httpx2.Request) -> None:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, request.url.path, body))

    def on_response(self, response: httpx2.Response) -> None:
        self.responses.append((response.status_code, response.headers))

    async def aon_request(self, request: httpx2.Request) -> None:
        self.on_request(request)

    async def aon_response(self, response: httpx2.Response) -> None:
        self.on_response(response)

    def client(self, **options: Any) -> httpx2.Client:
        hooks: dict[str, list[Callable[..., Any]]] = {
            "request": [self.on_request],
            "response": [self.on_response],
        }
        return httpx2.Client(event_hooks=hooks, **options)

    def async_client(self, **options: Any) -> httpx2.AsyncClient:
        hooks: dict[str, list[Callable[..., Any]]] = {
            "request": [self.aon_request],
            "response": [self.aon_response],
        }
        return httpx2.AsyncClient(event_hooks=hooks, **options)

    def bodies(self, path_end: str) -> list[dict[str, Any]]:
        return [body for _, path, body in self.requests if path.endswith(path_end)]
