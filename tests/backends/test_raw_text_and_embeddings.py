"""Raw text continuation (``/v1/completions``) and embeddings (``/v1/embeddings``) on each
backend: the real bundled SmolLM2 through llama.cpp, and the OpenAI-compatible and litellm
backends against a real upstream process on 127.0.0.1."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from proxy.backends.base import Embedder, SamplingParams, TextCompleter, collect
from proxy.backends.litellm_backend import LiteLLMBackend
from proxy.backends.llamacpp import LlamaCppBackend
from proxy.backends.openai_compat import OpenAICompatBackend
from proxy.errors import ContextLengthExceeded, UpstreamRejected

from .conftest import Stub, label, litellm_spec, loaded, openai_spec, smollm2_spec

GREEDY = SamplingParams(max_tokens=12, temperature=0.0, seed=0)


@pytest.fixture
async def generator() -> AsyncIterator[LlamaCppBackend]:
    async with loaded(smollm2_spec(256)) as backend:
        yield backend


@pytest.mark.model
async def test_llamacpp_continues_raw_text_without_the_chat_template(
    generator: LlamaCppBackend,
) -> None:
    assert isinstance(generator, TextCompleter)
    raw = await collect(generator.stream_text("1, 2, 3, 4, 5,", GREEDY))
    chat = await generator.complete([{"role": "user", "content": "1, 2, 3, 4, 5,"}], GREEDY)
    assert raw.text.lstrip().startswith("6")  # a continuation, not an assistant's reply
    assert raw.text != chat.text
    # Prompt tokens: the text and the BOS token only, no template around them.
    assert 0 < raw.usage.prompt_tokens < chat.usage.prompt_tokens
    assert raw.usage.completion_tokens <= 12
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(generator.stream_text("word " * 400, GREEDY))
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "prompt"


@pytest.mark.model
async def test_llamacpp_embeds_only_when_loaded_to(generator: LlamaCppBackend) -> None:
    with pytest.raises(UpstreamRejected):
        await generator.embed(["x"], None)
    embedder = LlamaCppBackend(smollm2_spec(256, "embeddings"))
    await embedder.start()
    try:
        assert isinstance(embedder, Embedder)
        result = await embedder.embed(["The cat sat.", "A cat was sitting.", "Tax law"], None)
        cat, sitting, tax = result.vectors
        assert len(cat) == 576  # SmolLM2-135M's hidden size
        assert result.usage.prompt_tokens > 0
        assert result.usage.completion_tokens == 0

        def cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
            dot = sum(x * y for x, y in zip(a, b, strict=True))
            return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

        assert cosine(cat, sitting) > cosine(cat, tax)
        with pytest.raises(UpstreamRejected) as caught:
            await embedder.embed(["x"], 64)
        assert caught.value.param == "dimensions"
    finally:
        await embedder.aclose()


async def test_openai_compat_text_completion_and_embeddings(stub: Stub) -> None:
    path = label("ok")
    backend = OpenAICompatBackend(openai_spec(stub.url(path)))
    await backend.start()
    try:
        raw = await collect(backend.stream_text("Once", GREEDY))
        assert raw.text == "hello from stub"
        assert raw.usage.prompt_tokens == 7
        sent = stub.stats(path)["last_body"]
        assert sent["prompt"] == "Once"
        assert "messages" not in sent
        assert sent["max_tokens"] == 12
        result = await backend.embed(["ab", "abcd"], 8)
        # The stub lists them in reverse; the index puts them back in input order.
        assert result.vectors == ((2.0, 1.0, 0.0), (4.0, 1.0, 1.0))
        assert result.usage.prompt_tokens == 3
        assert stub.stats(path)["last_body"]["dimensions"] == 8
    finally:
        await backend.aclose()


async def test_litellm_text_completion_and_embeddings(
    stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-local")
    path = label("ok")
    backend = LiteLLMBackend(litellm_spec(stub.url(path), "openai/stub", api_key_env="STUB_KEY"))
    await backend.start()
    try:
        result = await backend.embed(["ab", "abcd"], None)
        assert result.vectors == ((2.0, 1.0, 0.0), (4.0, 1.0, 1.0))
        raw = await collect(backend.stream_text("Once", GREEDY))
        assert raw.text == "hello from stub"
        assert stub.stats(path)["last_body"]["prompt"] == "Once"
    finally:
        await backend.aclose()
