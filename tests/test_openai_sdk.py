"""The drop-in promise: the official OpenAI SDK, pointed at ``perfics serve`` on the real
bundled SmolLM2, works unchanged — sync and async, streaming and not — and every response
carries the decision headers."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import ServerProcess

pytestmark = pytest.mark.model
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def client(model_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{model_server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def aclient(model_server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{model_server.base_url}/v1", api_key="unused", max_retries=0
    )


def test_non_streaming_with_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=QUESTION,
        max_tokens=12,
        temperature=0,
        seed=1,
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "smollm2-135m"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-perfics-model"] == "smollm2-135m"
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-perfics-task"] == "general"
    assert raw.headers["x-perfics-task-source"] == "alias"
    assert raw.headers["x-perfics-fallbacks"] == "0"
    assert int(raw.headers["x-perfics-prompt-tokens"]) == completion.usage.prompt_tokens


def test_max_tokens_limit_gives_finish_reason_length(client: openai.OpenAI) -> None:
    long: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Write a long story about a dragon and a knight."}
    ]
    for completion in (
        client.chat.completions.create(model="auto", messages=long, temperature=0, max_tokens=5),
        client.chat.completions.create(
            model="auto", messages=long, temperature=0, max_completion_tokens=5
        ),
    ):
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 5


def test_stream_text_equals_non_streamed_text_at_temperature_zero(client: openai.OpenAI) -> None:
    kwargs = {"model": "auto", "messages": QUESTION, "max_tokens": 24, "temperature": 0, "seed": 7}
    whole = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    stream = client.chat.completions.create(stream=True, **kwargs)  # type: ignore[call-overload]
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    assert len({c.id for c in chunks}) == 1
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [whole.choices[0].finish_reason]
    assert not any(c.usage for c in chunks), "usage chunk only when include_usage is asked"


def test_stream_include_usage_sends_one_final_usage_chunk(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        messages=QUESTION,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-perfics-model"] == "smollm2-135m"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0] is chunks[-1]
    assert usage_chunks[0].choices == []
    assert usage_chunks[0].usage is not None
    assert usage_chunks[0].usage.completion_tokens == 8


def test_stop_sequences_truncate_at_the_earliest_match(client: openai.OpenAI) -> None:
    kwargs = {"model": "auto", "max_tokens": 40, "temperature": 0, "seed": 3}
    messages = [{"role": "user", "content": "Count from one to ten in words."}]
    full = client.chat.completions.create(messages=messages, **kwargs).choices[0].message.content  # type: ignore[call-overload]
    assert full
    assert len(full) > 12
    # Two stop strings taken from the greedy answer itself; the one that occurs first wins,
    # whatever its position in the list, and neither is returned.
    late, early = full[2 * len(full) // 3 :][:3], full[len(full) // 3 :][:3]
    expected = full[: min(full.find(late), full.find(early))]
    cut = client.chat.completions.create(messages=messages, stop=[late, early], **kwargs)  # type: ignore[call-overload]
    assert cut.choices[0].message.content == expected
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        messages=messages, stop=[late, early], stream=True, **kwargs
    )  # type: ignore[call-overload]
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


def test_n_choices_are_indexed(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="auto",
        messages=QUESTION,
        n=2,
        max_tokens=6,
        temperature=0.8,
        seed=11,
    )
    assert [c.index for c in completion.choices] == [0, 1]
    streamed = client.chat.completions.create(
        model="auto",
        messages=QUESTION,
        n=2,
        max_tokens=6,
        temperature=0.8,
        seed=11,
        stream=True,
    )
    texts = {0: "", 1: ""}
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {c.index: c.message.content for c in completion.choices}


def test_content_parts_and_every_role(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "developer", "content": "Answer in one word."},
        {"role": "system", "content": [{"type": "text", "text": "Be polite."}]},
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    completion = client.chat.completions.create(
        model="auto", messages=messages, max_tokens=4, temperature=0
    )
    assert completion.choices[0].message.content is not None


async def test_async_client_stream_and_not(aclient: openai.AsyncOpenAI) -> None:
    completion = await aclient.chat.completions.create(
        model="auto", messages=QUESTION, max_tokens=4
    )
    assert completion.choices[0].message.content is not None
    stream = await aclient.chat.completions.create(
        model="auto", messages=QUESTION, max_tokens=4, stream=True
    )
    pieces = [c async for c in stream]
    assert pieces[-1].choices[0].finish_reason in {"stop", "length"}


def test_models_endpoints(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"auto", "gpt-4o", "smollm2-135m"} <= ids
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_health_and_readiness(model_server: ServerProcess) -> None:
    assert httpx.get(f"{model_server.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{model_server.base_url}/readyz").json()
    assert ready["status"] == "ready"
    assert ready["models_ready"] == ["smollm2-135m"]


def small_request_seconds(server: ServerProcess) -> float:
    started = time.monotonic()
    reply = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": QUESTION, "max_tokens": 2},
        timeout=60,
    )
    assert reply.status_code == 200
    return time.monotonic() - started


def test_disconnect_mid_stream_frees_the_model(model_server: ServerProcess) -> None:
    """An abandoned 1500-token generation would hold the model for 10 s or more; after the
    client leaves, the next request is answered about as fast as on an idle model (the bound
    scales with an idle baseline so a loaded machine does not make it flaky)."""
    idle = small_request_seconds(model_server)
    story = [{"role": "user", "content": "Write a very long story about the sea."}]
    with httpx.stream(
        "POST",
        f"{model_server.base_url}/v1/chat/completions",
        json={
            "model": "auto",
            "messages": story,
            "max_tokens": 1500,
            "stream": True,
            "temperature": 1.0,
        },
        timeout=30,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break  # the first token arrived; leave
    assert small_request_seconds(model_server) < 1.5 + 3 * idle


def test_disconnect_during_non_streaming_request_frees_the_model(
    model_server: ServerProcess,
) -> None:
    idle = small_request_seconds(model_server)
    story = [{"role": "user", "content": "Write a very long story about the mountains."}]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{model_server.base_url}/v1/chat/completions",
            json={"model": "auto", "messages": story, "max_tokens": 1500, "temperature": 1.0},
            timeout=httpx.Timeout(30, read=0.7),
        )
    assert small_request_seconds(model_server) < 1.5 + 3 * idle


def test_full_queue_answers_429_with_retry_after(model_server: ServerProcess) -> None:
    """queue_size is 2: one request generating, two waiting, the next is refused."""
    body = {
        "model": "auto",
        "messages": QUESTION,
        "max_tokens": 200,
        "temperature": 1.0,
        "stop": ["never-appears-xyz"],
    }
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        r = httpx.post(f"{model_server.base_url}/v1/chat/completions", json=body, timeout=60)
        with lock:
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert r.headers["retry-after"].isdigit()
                assert r.json()["error"]["type"] == "rate_limit_error"

    threads = [threading.Thread(target=send) for _ in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert statuses.count(429) >= 1, statuses
    assert statuses.count(200) >= 3, statuses


def test_concurrent_async_requests_all_complete(aclient: openai.AsyncOpenAI) -> None:
    async def many() -> list[str | None]:
        calls = [
            aclient.chat.completions.create(model="auto", messages=QUESTION, max_tokens=3)
            for _ in range(2)
        ]
        return [r.choices[0].message.content for r in await asyncio.gather(*calls)]

    assert len(asyncio.run(many())) == 2
