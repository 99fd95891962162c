"""The HTTP backends against a real OpenAI-compatible server: llama-cpp-python's own, on the
bundled SmolLM2."""

from __future__ import annotations

import pytest

from proxy.backends.base import SamplingParams
from proxy.backends.litellm_backend import LiteLLMBackend
from proxy.backends.openai_compat import OpenAICompatBackend

from .conftest import litellm_spec, openai_spec

pytestmark = pytest.mark.model

MESSAGES = [{"role": "user", "content": "Name a colour."}]
PARAMS = SamplingParams(max_tokens=12, temperature=0.0, seed=1)


async def test_complete_and_stream(llama_server: str) -> None:
    backend = OpenAICompatBackend(openai_spec(llama_server, model="smollm2"))
    await backend.start()
    try:
        whole = await backend.complete(MESSAGES, PARAMS)
        deltas = [d async for d in backend.stream(MESSAGES, PARAMS)]
    finally:
        await backend.aclose()
    assert whole.text.strip()
    assert whole.finish_reason in ("stop", "length")
    assert whole.usage.prompt_tokens > 0
    assert 0 < whole.usage.completion_tokens <= 12

    *pieces, last = deltas
    assert "".join(d.text for d in pieces).strip()
    assert all(d.usage is None and d.finish_reason is None for d in pieces)
    assert last.finish_reason in ("stop", "length")
    assert last.usage is not None
    # llama.cpp's server sends no usage chunk: completion tokens are counted by chunks.
    assert last.usage.prompt_tokens == 0
    assert 0 < last.usage.completion_tokens <= 12


async def test_litellm_complete_and_stream(
    llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_KEY", "sk-local")
    backend = LiteLLMBackend(litellm_spec(llama_server, "openai/smollm2", api_key_env="LLAMA_KEY"))
    await backend.start()
    whole = await backend.complete(MESSAGES, PARAMS)
    deltas = [d async for d in backend.stream(MESSAGES, PARAMS)]
    await backend.aclose()
    assert whole.text.strip()
    assert whole.finish_reason in ("stop", "length")
    assert whole.usage.prompt_tokens > 0
    assert whole.usage.completion_tokens > 0
    assert "".join(d.text for d in deltas).strip()
    assert deltas[-1].finish_reason in ("stop", "length")
    assert deltas[-1].usage is not None


async def test_samples_from_a_real_server(llama_server: str) -> None:
    # llama-cpp-python's server answers one choice whatever n asks: the backend makes up the
    # rest with single calls, each with its own seed. (That server's answers to one seed vary
    # with what its cache held before, so they are not compared across calls.)
    backend = OpenAICompatBackend(openai_spec(llama_server, model="smollm2"))
    await backend.start()
    warm = SamplingParams(max_tokens=12, temperature=0.9, seed=4)
    try:
        first = await backend.sample(MESSAGES, warm, 3)
        second = await backend.sample(MESSAGES, warm, 3)
    finally:
        await backend.aclose()
    for answers in (first, second):
        assert len(answers) == 3
        assert all(a.text.strip() and a.finish_reason in ("stop", "length") for a in answers)
        assert len({a.text for a in answers}) > 1
        assert all(a.usage.prompt_tokens > 0 for a in answers)  # three calls, three prompts
