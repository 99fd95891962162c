"""``OpenAICompatBackend.sample``: k answers in one upstream call with ``n`` where the upstream
honours it, made up by single calls side by side where it does not, against the stub upstream
(a real HTTP server on loopback)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.backends.base import Sampler, SamplingParams
from proxy.backends.openai_compat import OpenAICompatBackend
from proxy.errors import InvalidRequest, UpstreamRejected
from proxy.results import Usage

from .conftest import Stub, label, openai_spec

MESSAGES = [{"role": "user", "content": "hi"}]
PARAMS = SamplingParams(max_tokens=5, temperature=0.8, seed=7)


@contextlib.asynccontextmanager
async def started(*bases: str, **options: Any) -> AsyncIterator[OpenAICompatBackend]:
    backend = OpenAICompatBackend(openai_spec(*bases, **options))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_one_call_with_n_when_the_upstream_honours_it(stub: Stub) -> None:
    lab = label("ok")
    async with started(stub.url(lab)) as backend:
        assert isinstance(backend, Sampler)
        answers = await backend.sample(MESSAGES, PARAMS, 4)
    assert [a.text for a in answers] == [
        "hello from stub",
        "hello from stub #1",
        "hello from stub #2",
        "hello from stub #3",
    ]
    assert [a.finish_reason for a in answers] == ["stop"] * 4
    # One call: its usage (the prompt once, every choice's tokens) on the first answer.
    assert [a.usage for a in answers] == [Usage(7, 12, 3)] + [Usage(0, 0, 0)] * 3
    stats = stub.stats(lab)
    assert (stats["requests"], stats["ns"], stats["seeds"]) == (1, [4], [7])


async def test_single_calls_make_up_what_an_upstream_ignoring_n_falls_short(stub: Stub) -> None:
    lab = label("oneonly")
    async with started(stub.url(lab)) as backend:
        answers = await backend.sample(MESSAGES, PARAMS, 3)
        again = await backend.sample(MESSAGES, PARAMS, 2)
    assert [a.text for a in answers] == ["hello from stub"] * 3
    assert sum((a.usage for a in answers), Usage(0, 0, 0)) == Usage(21, 9, 9)
    stats = stub.stats(lab)
    # The n call and two single calls seeded 8 and 9 (side by side: either order); then,
    # the upstream known to ignore n, single calls only.
    assert stats["ns"][0] == 3
    assert stats["ns"][1:] == [None] * 4
    assert stats["seeds"][0] == 7
    assert sorted(stats["seeds"][1:3]) == [8, 9]
    assert sorted(stats["seeds"][3:]) == [7, 8]
    assert len(again) == 2
    assert stats["max_concurrent"] >= 1


async def test_k_single_calls_when_the_upstream_refuses_n(stub: Stub) -> None:
    lab = label("non")
    async with started(stub.url(lab)) as backend:
        answers = await backend.sample(MESSAGES, PARAMS.replace(seed=None), 3)
        await backend.sample(MESSAGES, PARAMS, 2)
    assert [a.usage for a in answers] == [Usage(7, 3, 3)] * 3
    stats = stub.stats(lab)
    assert stats["ns"] == [3, None, None, None, None, None]
    assert stats["seeds"][1:4] == [None] * 3


async def test_a_request_every_call_refuses_is_the_clients_to_fix(stub: Stub) -> None:
    lab = label("e400")
    async with started(stub.url(lab)) as backend:
        with pytest.raises(UpstreamRejected):
            await backend.sample(MESSAGES, PARAMS, 3)
        # Not taken as a refusal of n: the next sample asks with n again.
        with pytest.raises(UpstreamRejected):
            await backend.sample(MESSAGES, PARAMS, 2)
    # (Single calls still under way when the first was refused were cancelled.)
    assert [n for n in stub.stats(lab)["ns"] if n is not None] == [3, 2]


async def test_one_sample_is_one_plain_call(stub: Stub) -> None:
    lab = label("ok")
    async with started(stub.url(lab)) as backend:
        (answer,) = await backend.sample(MESSAGES, PARAMS, 1)
        with pytest.raises(InvalidRequest):
            await backend.sample(MESSAGES, PARAMS, 17)
    assert answer.usage == Usage(7, 3, 3)
    assert stub.stats(lab)["ns"] == [None]
