"""``LlamaCppBackend.sample`` on the real bundled SmolLM2: k answers decoded side by side in one
batch that shares the prompt's KV cache, each sequence with its own sampler and seed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from proxy.backends.base import Sampler, SamplingParams
from proxy.backends.llamacpp import LlamaCppBackend
from proxy.errors import InvalidRequest, UpstreamRejected
from tests.backends.conftest import loaded, smollm2_spec

pytestmark = pytest.mark.model
STORY = [{"role": "user", "content": "Write one sentence about a dragon who loves tea."}]
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
WARM = SamplingParams(max_tokens=24, temperature=0.8, seed=11)
GREEDY = SamplingParams(max_tokens=24, temperature=0.0, seed=0)


@pytest.fixture
async def backend() -> AsyncIterator[LlamaCppBackend]:
    async with loaded(smollm2_spec(1024)) as started:
        yield started


async def test_a_seed_gives_the_same_k_answers_every_time(backend: LlamaCppBackend) -> None:
    assert isinstance(backend, Sampler)
    first = await backend.sample(STORY, WARM, 4)
    await backend.complete(CAPITAL, GREEDY)  # something else in between, in the cache too
    second = await backend.sample(STORY, WARM, 4)
    assert [a.text for a in first] == [a.text for a in second]
    assert [(a.finish_reason, a.usage.completion_tokens) for a in first] == [
        (a.finish_reason, a.usage.completion_tokens) for a in second
    ]


async def test_each_sequence_samples_with_its_own_seed(backend: LlamaCppBackend) -> None:
    answers = await backend.sample(STORY, WARM, 4)
    assert len({a.text for a in answers}) == 4, [a.text for a in answers]
    assert all(a.text.strip() for a in answers)
    other = await backend.sample(STORY, WARM.replace(seed=12), 4)
    assert [a.text for a in other] != [a.text for a in answers]


async def test_one_sample_is_the_answer_complete_gives(backend: LlamaCppBackend) -> None:
    greedy = await backend.complete(CAPITAL, GREEDY)
    (sampled,) = await backend.sample(CAPITAL, GREEDY, 1)
    assert sampled.text == greedy.text
    assert sampled.text
    assert sampled.finish_reason == greedy.finish_reason
    # Sequence 0 is seeded as complete() is: the same answer at a temperature too.
    warm = await backend.complete(STORY, WARM)
    (warm_sampled,) = await backend.sample(STORY, WARM, 1)
    assert warm_sampled.text == warm.text


async def test_the_prompt_is_counted_once(backend: LlamaCppBackend) -> None:
    prompt_tokens = len(backend._prompt_tokens(STORY))
    answers = await backend.sample(STORY, WARM, 3)
    assert answers[0].usage.prompt_tokens == prompt_tokens
    assert [a.usage.prompt_tokens for a in answers[1:]] == [0, 0]
    assert all(0 < a.usage.completion_tokens <= 24 for a in answers)
    # Asked again, the prompt comes from the cache but for its last token.
    again = await backend.sample(STORY, WARM, 3)
    assert again[0].usage.evaluated_prompt_tokens == 1
    assert [a.usage.evaluated_prompt_tokens for a in again[1:]] == [0, 0]


async def test_max_tokens_per_sequence(backend: LlamaCppBackend) -> None:
    answers = await backend.sample(STORY, WARM.replace(max_tokens=5), 4)
    for answer in answers:
        assert answer.usage.completion_tokens <= 5
        if answer.finish_reason == "length":
            assert answer.usage.completion_tokens == 5
    assert "length" in {a.finish_reason for a in answers}


async def test_stop_strings_end_each_sequence(backend: LlamaCppBackend) -> None:
    answers = await backend.sample(STORY, WARM.replace(max_tokens=60, stop=("e",)), 4)
    assert [a.finish_reason for a in answers] == ["stop"] * 4
    assert all("e" not in a.text for a in answers)
    lengths = {a.usage.completion_tokens for a in answers}
    assert max(lengths) < 60


async def test_every_sequence_keeps_to_the_response_format(backend: LlamaCppBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    }
    params = SamplingParams(
        max_tokens=40,
        temperature=0.8,
        seed=3,
        response_format={"type": "json_schema", "json_schema": {"schema": schema}},
    )
    answers = await backend.sample(CAPITAL, params, 3)
    for answer in answers:
        assert answer.finish_reason == "stop", answer
        assert isinstance(json.loads(answer.text)["city"], str)


async def test_a_forced_tool_call_in_every_sequence(backend: LlamaCppBackend) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 20}},
                "required": ["city"],
            },
        },
    }
    params = SamplingParams(
        max_tokens=48, temperature=0.8, seed=5, tools=[tool], tool_choice="required"
    )
    answers = await backend.sample(CAPITAL, params, 2)
    for answer in answers:
        assert answer.finish_reason == "tool_calls"
        (call,) = answer.tool_calls
        assert call["function"]["name"] == "weather"
        assert "city" in json.loads(call["function"]["arguments"])


async def test_cancelling_stops_the_batch_and_frees_the_model(backend: LlamaCppBackend) -> None:
    greedy = await backend.complete(CAPITAL, GREEDY)
    long = SamplingParams(max_tokens=200, temperature=0.8, seed=1)
    task = asyncio.create_task(backend.sample(STORY, long, 8))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The lock is free at once (the worker left llama.cpp before the cancellation finished),
    # and the sequences the batch used are gone: the next answer is the one before.
    assert not backend._lock.locked()
    after = await asyncio.wait_for(backend.complete(CAPITAL, GREEDY), timeout=30)
    assert after.text == greedy.text
    assert (await backend.sample(CAPITAL, GREEDY, 1))[0].text == greedy.text


async def test_k_is_bounded(backend: LlamaCppBackend) -> None:
    with pytest.raises(InvalidRequest):
        await backend.sample(CAPITAL, GREEDY, 17)
    with pytest.raises(InvalidRequest):
        await backend.sample(CAPITAL, GREEDY, 0)


async def test_a_prompt_must_leave_each_answer_a_token(backend: LlamaCppBackend) -> None:
    words = ["word"] * 990
    while 1024 - len(backend._prompt_tokens([{"role": "user", "content": " ".join(words)}])) > 8:
        words.append("word")
    long = [{"role": "user", "content": " ".join(words)}]
    room = 1024 - len(backend._prompt_tokens(long))
    with pytest.raises(UpstreamRejected):
        await backend.sample(long, GREEDY, room + 1)
