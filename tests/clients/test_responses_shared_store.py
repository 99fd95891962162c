"""The Responses API through the official openai SDK across two ``perfics serve`` processes
that share one store, as two replicas behind a load balancer do: a response made on proxy A
is continued on proxy B with ``previous_response_id`` (the model is sent the earlier turn),
retrieved on B, deleted on A and then gone on B. On a shared SQLite file and on PostgreSQL.

The model is the stub upstream (``tests/backends/stub_upstream.py``), whose ``/stats`` shows
the body each proxy sent it, so the test sees what the model was given."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.backends.conftest import Stub, label
from tests.conftest import ServerProcess
from tests.postgres_server import PostgresServer

POLICY = """
version: 1
default_task: general
tasks:
  general: {{max_rounds: 0, answer_tokens: 40}}
models:
  - id: up
    backend: openai
    model: stub
    api_base: "{api_base}"
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality: {{default: [5.0]}}
"""
STUB_ANSWER = "hello from stub"  # what the stub's ``ok`` behaviour always says


@pytest.fixture(scope="module")
def upstream() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.stop()


class Pair:
    """Two proxies on one store, both in front of the stub under one label."""

    def __init__(self, tmp_path: Path, upstream: Stub, database: str) -> None:
        self.upstream = upstream
        self.label = label("ok")
        policy = tmp_path / "policy.yaml"
        policy.write_text(textwrap.dedent(POLICY.format(api_base=upstream.url(self.label))))
        env = {"PERFICS_DATABASE_URL": database}
        self.a = ServerProcess(policy, env, stderr_path=tmp_path / "a.log")
        self.b = ServerProcess(policy, env, stderr_path=tmp_path / "b.log")

    def client(self, server: ServerProcess) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-any", max_retries=0)

    def last_body(self) -> dict[str, object]:
        body: dict[str, object] = self.upstream.stats(self.label)["last_body"]
        return body

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path: Path, upstream: Stub) -> Iterator[Pair]:
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        database = postgres.database(f"responses_{tmp_path.name[-20:].lower()}")
    made = Pair(tmp_path, upstream, database)
    yield made
    made.stop()


def test_a_conversation_moves_between_proxies_through_the_store(pair: Pair) -> None:
    a, b = pair.client(pair.a), pair.client(pair.b)
    first = a.responses.create(
        model="auto", instructions="Answer briefly.", input="Say hello to the team."
    )
    assert first.output_text == STUB_ANSWER
    assert pair.last_body()["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Say hello to the team."},
    ]

    # Proxy B never saw the first turn; the store has it.
    with b.responses.stream(
        model="auto", previous_response_id=first.id, input="And once more, please."
    ) as stream:
        second = stream.get_final_response()
    assert second.previous_response_id == first.id
    assert second.output_text == STUB_ANSWER
    assert pair.last_body()["messages"] == [
        {"role": "user", "content": "Say hello to the team."},
        {"role": "assistant", "content": STUB_ANSWER},
        {"role": "user", "content": "And once more, please."},
    ]
    items = b.responses.input_items.list(second.id, order="asc").data
    assert [(item.type, getattr(item, "role", None)) for item in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]

    assert b.responses.retrieve(first.id).output_text == STUB_ANSWER
    a.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as gone:
        b.responses.retrieve(first.id)
    assert gone.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError) as cannot_continue:
        b.responses.create(model="auto", previous_response_id=first.id, input="Still there?")
    assert cannot_continue.value.body["param"] == "previous_response_id"  # type: ignore[index]
    # The second response does not depend on the first one's row: it keeps its own copy.
    assert a.responses.retrieve(second.id).output_text == STUB_ANSWER
