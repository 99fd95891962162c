"""``LlamaCppBackend.likelihood`` on the real bundled SmolLM2: what the ``likelier`` acceptance
rule asks of the embedded backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy.backends.base import SamplingParams, Scorer
from proxy.backends.llamacpp import LlamaCppBackend
from proxy.errors import UpstreamRejected
from tests.backends.conftest import loaded, smollm2_spec

pytestmark = pytest.mark.model
CONVERSATION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = SamplingParams(max_tokens=24, temperature=0.0, seed=0)


@pytest.fixture
async def backend() -> AsyncIterator[LlamaCppBackend]:
    async with loaded(smollm2_spec(512)) as started:
        yield started


async def test_a_fluent_answer_is_likelier_than_noise(backend: LlamaCppBackend) -> None:
    assert isinstance(backend, Scorer)
    fluent = await backend.likelihood(CONVERSATION, "The capital of France is Paris.")
    noise = await backend.likelihood(CONVERSATION, "zxq blorf 77 ;; purple ankle tuesday")
    assert fluent.mean_logprob > noise.mean_logprob + 1.0
    assert fluent.mean_logprob < 0
    assert fluent.tokens >= 6
    # A prefill: prompt tokens only, the answer counted among them.
    assert fluent.usage.completion_tokens == 0
    assert fluent.usage.prompt_tokens > fluent.tokens


async def test_the_conversation_prefix_is_read_once(backend: LlamaCppBackend) -> None:
    first = await backend.likelihood(CONVERSATION, "Paris.")
    second = await backend.likelihood(CONVERSATION, "It is Paris, on the Seine.")
    assert first.usage.evaluated_prompt_tokens is not None
    assert second.usage.evaluated_prompt_tokens is not None
    assert second.usage.evaluated_prompt_tokens <= second.tokens + 1
    assert first.usage.evaluated_prompt_tokens > second.usage.evaluated_prompt_tokens


async def test_scoring_leaves_generation_unchanged(backend: LlamaCppBackend) -> None:
    # Scoring evaluates tokens outside llama-cpp-python's own generate(); the next generation
    # must not sample from stale logits or a wrong KV cache.
    before = await backend.complete(CONVERSATION, GREEDY)
    await backend.likelihood(CONVERSATION, "zxq blorf " + before.text[:10])
    after = await backend.complete(CONVERSATION, GREEDY)
    assert after.text == before.text
    await backend.likelihood(CONVERSATION, before.text)  # the exact prompt + answer prefix
    assert (await backend.complete(CONVERSATION, GREEDY)).text == before.text


async def test_the_cache_record_matches_what_scoring_left_in_it(
    backend: LlamaCppBackend,
) -> None:
    # llama-cpp-python's generate() reuses the KV prefix that its record of evaluated tokens
    # shares with the next prompt. Scoring overwrites the draft's positions, so the record must
    # say so, or a critique that extends the draft would reuse the scored text's cache entries.
    # (Comparing generated text instead would not do: a prefix evaluated in another batch split
    # differs in the last bits, and greedy decoding of a 135M model can flip on that.)
    await backend.complete(CONVERSATION, GREEDY)
    llama = backend._llama
    assert llama is not None
    scored = "Berlin is a large city in Germany, not France."
    await backend.likelihood(CONVERSATION, scored)
    prompt = backend._prompt_tokens(CONVERSATION)
    answer = llama.tokenize(scored.encode(), add_bos=False, special=False)
    assert llama._input_ids.tolist() == (prompt + answer)[:-1]


async def test_an_answer_past_the_context_is_refused(backend: LlamaCppBackend) -> None:
    with pytest.raises(UpstreamRejected):
        await backend.likelihood(CONVERSATION, "word " * 600)
