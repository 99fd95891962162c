"""``POST /v1/embeddings`` through the official OpenAI SDK (which asks for base64 by default)
against a real uvicorn server: routed to the models that list ``embeddings``, cheapest first
with the next on a failure, priced, in the ledger, admitted by keys; a 400 naming ``model``
where the policy has none."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from proxy.backends.scripted import ScriptedBackend
from proxy.errors import BackendUnavailable
from tests.conftest import POLICIES, InProcessServer
from tests.keys.conftest import make_key

EMBEDDING_MODELS = """
  - id: embed-cheap
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 512
    input_usd_per_mtok: 0.02
    output_usd_per_mtok: 0.0
    capabilities: [embeddings]
  - id: embed-dear
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 8192
    input_usd_per_mtok: 0.13
    output_usd_per_mtok: 0.0
    capabilities: [embeddings]
"""


class Service:
    def __init__(self, tmp_path: Path, *, embedding_models: bool = True) -> None:
        policy = tmp_path / "policy.yaml"
        text = (POLICIES / "scripted.yaml").read_text()
        policy.write_text(text + (EMBEDDING_MODELS if embedding_models else ""))
        self.db = tmp_path / "store.db"
        self.backends = {
            name: ScriptedBackend(name) for name in ("alpha", "beta", "embed-cheap", "embed-dear")
        }
        self.server = InProcessServer(policy, self.backends, database_url=f"sqlite:///{self.db}")
        self.base_url = self.server.base_url
        self.client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="x", max_retries=0)

    def ledger(self) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as db:
            return db.execute(
                "SELECT model, task, prompt_tokens, cost_usd, status FROM ledger ORDER BY id"
            ).fetchall()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    yield svc
    svc.server.stop()


def test_embeddings_come_from_the_cheapest_embedding_model(service: Service) -> None:
    raw = service.client.embeddings.with_raw_response.create(
        model="auto", input=["a cat sat", "hello"]
    )
    result = raw.parse()  # the SDK asked for base64 and decoded it
    assert [item.embedding for item in result.data] == [[9.0, 3.0], [5.0, 1.0]]
    assert [item.index for item in result.data] == [0, 1]
    assert result.model == "embed-cheap"
    assert result.usage.prompt_tokens == 5  # ceil(9/4) + ceil(5/4)
    assert raw.headers["x-perfics-model"] == "embed-cheap"
    assert raw.headers["x-perfics-cost-usd"] == "0.0000001"  # 5 * 0.02 / 1e6
    float_result = service.client.embeddings.create(
        model="embed-dear", input="pinned", encoding_format="float"
    )
    assert float_result.model == "embed-dear"
    assert float_result.data[0].embedding == [6.0, 1.0]
    service.server.stop()  # the ledger batch is written on the way out
    assert service.ledger() == [
        ("embed-cheap", "embeddings", 5, pytest.approx(1e-7), 200),
        ("embed-dear", "embeddings", 2, pytest.approx(2.6e-7), 200),
    ]


def test_a_failing_embedding_model_falls_back_to_the_next(service: Service) -> None:
    service.backends["embed-cheap"].queue(BackendUnavailable("down"))
    result = service.client.embeddings.create(model="auto", input="x", encoding_format="float")
    assert result.model == "embed-dear"


def test_an_input_longer_than_every_context_is_context_length_exceeded(service: Service) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        service.client.embeddings.create(model="embed-cheap", input="word " * 1000)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.body["param"] == "input"  # type: ignore[index]
    # The larger model takes it when the client lets perfics choose.
    assert service.client.embeddings.create(model="auto", input="word " * 1000).model == (
        "embed-dear"
    )


def test_a_chat_model_does_not_embed(service: Service) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        service.client.embeddings.create(model="alpha", input="x")
    assert caught.value.code == "unsupported_capability"
    assert caught.value.body["param"] == "model"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [[1, 2, 3]]}, "input"),
        ({"input": ""}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({}, "input"),
    ],
)
def test_bad_input_is_a_400_naming_it(
    service: Service, body: dict[str, object], param: str
) -> None:
    response = httpx.post(
        f"{service.base_url}/v1/embeddings", json={"model": "auto", **body}, timeout=10
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.heavy
def test_without_an_embedding_model_the_answer_says_so(tmp_path: Path) -> None:
    service = Service(tmp_path, embedding_models=False)
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            service.client.embeddings.create(model="auto", input="x")
        assert "no model of this policy can serve embeddings" in caught.value.message
        assert caught.value.body["param"] == "model"  # type: ignore[index]
    finally:
        service.server.stop()


@pytest.mark.heavy
def test_a_key_admits_embeddings_against_its_budget(tmp_path: Path) -> None:
    service = Service(tmp_path)
    try:
        # 0.0000003 USD: two 6-token embeddings at embed-cheap's 0.02 USD per million.
        secret = make_key(
            f"sqlite:///{service.db}",
            "--name",
            "emb",
            "--budget-usd",
            "0.0000003",
            "--period",
            "total",
        )
        keyed = openai.OpenAI(base_url=f"{service.base_url}/v1", api_key=secret, max_retries=0)
        answered = 2
        for _ in range(answered):
            keyed.embeddings.create(model="embed-cheap", input="a cat sat on the mat!")
        with pytest.raises(openai.RateLimitError) as caught:
            keyed.embeddings.create(model="embed-cheap", input="a cat sat on the mat!")
        assert caught.value.code == "insufficient_quota"
        with pytest.raises(openai.AuthenticationError):
            service.client.embeddings.create(model="auto", input="x")  # keys exist now
    finally:
        service.server.stop()
    rows = [row for row in service.ledger() if row[4] == 200]
    assert len(rows) == answered
