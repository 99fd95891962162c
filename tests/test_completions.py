"""``POST /v1/completions`` through the official OpenAI SDK with scripted models behind a real
uvicorn server: the prompt reaches the backend as raw text (no chat template), is never
refined, and is answered as ``text_completion`` objects, whole or streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from proxy.backends.base import Completion
from proxy.backends.scripted import ScriptedBackend
from proxy.results import Usage
from tests.conftest import POLICIES, InProcessServer


class Service:
    def __init__(self, policy: Path) -> None:
        self.alpha = ScriptedBackend("alpha", default="lazy dog.")
        self.beta = ScriptedBackend("beta")
        self.server = InProcessServer(policy, {"alpha": self.alpha, "beta": self.beta})
        self.base_url = self.server.base_url
        self.client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="x", max_retries=0)


@pytest.fixture
def service() -> Iterator[Service]:
    # The scripted policy plans 2 rounds for chats: a completion must still make one call.
    svc = Service(POLICIES / "scripted.yaml")
    yield svc
    svc.server.stop()


def test_a_completion_continues_the_raw_prompt_once(service: Service) -> None:
    service.alpha.queue(Completion(" jumps over the lazy dog.", "stop", Usage(9, 7)))
    raw = service.client.completions.with_raw_response.create(
        model="gpt-4o", prompt="The quick brown fox", max_tokens=12, temperature=0.0
    )
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.choices[0].text == " jumps over the lazy dog."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 16
    assert raw.headers["x-perfics-stop-reason"] == "not_refinable"
    assert raw.headers["x-perfics-rounds"] == raw.headers["x-perfics-rounds-planned"] == "0"
    (call,) = service.alpha.calls
    assert call.messages == ({"role": "user", "content": "The quick brown fox", "raw": True},)
    assert call.params.max_tokens == 12
    assert call.params.temperature == 0.0


def test_max_tokens_defaults_to_16_as_openais(service: Service) -> None:
    service.client.completions.create(model="auto", prompt="Once upon a time")
    assert service.alpha.calls[-1].params.max_tokens == 16


def test_a_streamed_completion_sends_text_chunks(service: Service) -> None:
    service.alpha.queue(Completion("one two three", "length", Usage(4, 3)))
    chunks = list(
        service.client.completions.create(
            model="auto",
            prompt="Count:",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_n_choices(service: Service) -> None:
    completion = service.client.completions.create(model="auto", prompt="Hi", n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert len(service.alpha.calls) == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "logprobs": 2}, "logprobs"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({}, "prompt"),
    ],
)
def test_what_is_not_served_is_a_400_naming_it(
    service: Service, body: dict[str, object], param: str
) -> None:
    response = httpx.post(
        f"{service.base_url}/v1/completions", json={"model": "auto", **body}, timeout=10
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert not service.alpha.calls
