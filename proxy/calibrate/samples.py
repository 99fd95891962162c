"""The samples behind a technique's figures, and selection replayed on them.

Calibrating ``best_of`` and ``vote`` must measure what a request gets, so every selection goes
through ``proxy.selection.select.select`` itself, with the request's checks built by
``RequestChecks.build`` from the question's messages and sampling. Its backend is a replay
(``replay``): the draft is the one the calibration already made (the same call, so the same
text), and the samples come from a ``SampleRecord`` — made by the model the first time select
asks for them, then served from the record. The largest size is run first with ``vote``
(which always makes every sample), so the smaller sizes and every variant (``best_of`` with
the checks on and off, ``vote``) choose among the *same* answers: size ``k`` sees the draft
and the first ``k - 1`` samples.

A record remembers the sampling settings its samples were drawn with (``params``: everything
but the seed offset); select asking for samples under other settings is a calibration bug and
raises ``ReplayMismatch``. Likelihoods (``best_of`` ranks passing samples by them on a scoring
backend) are measured once per answer text and kept in the record.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.backends.base import (
    Backend,
    Completion,
    Delta,
    Likelihood,
    Message,
    Sampler,
    SamplingParams,
    Scorer,
)
from proxy.results import Usage

from .store import fingerprint


class ReplayMismatch(RuntimeError):
    """Selection asked for samples drawn otherwise than the record's."""


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    finish_reason: str
    completion_tokens: int


@dataclass(slots=True)
class SampleRecord:
    """One model's samples for one question, after its draft: ``samples[i]`` was drawn with
    seed ``seed + 1 + i`` under the settings fingerprinted as ``params``; ``seconds`` is the
    wall time of the call(s) that made them; ``likelihoods`` maps an answer text's
    fingerprint to its mean token log-probability given the question."""

    params: str = ""
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    likelihoods: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "samples": [dataclasses.asdict(s) for s in self.samples],
            "seconds": round(self.seconds, 3),
            "likelihoods": self.likelihoods,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SampleRecord:
        return cls(
            str(data["params"]),
            [
                Sample(str(s["text"]), str(s["finish_reason"]), int(s["completion_tokens"]))
                for s in data["samples"]
            ],
            float(data["seconds"]),
            {str(k): float(v) for k, v in data["likelihoods"].items()},
        )


def _settings_key(params: SamplingParams, index: int) -> str:
    """The sampling settings of sample ``index`` with its seed offset taken off."""
    seed = params.seed - index if params.seed is not None else None
    return fingerprint(repr(params.replace(seed=seed)))


class _Replay:
    """A ``Backend`` for one selection: the first ``complete`` is the given draft; samples
    come from ``record``, made by ``backend`` where the record lacks them."""

    serial = True

    def __init__(self, backend: Backend, draft: str, record: SampleRecord) -> None:
        self.model_id = backend.model_id
        self.backend = backend
        self.draft = draft
        self.record = record
        self.made = 0  # answers the real model made for this selection
        self._completes = 0

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """The draft, then (for a backend that cannot batch) sample after sample."""
        index, self._completes = self._completes - 1, self._completes + 1
        if index < 0:
            return Completion(self.draft, "stop", Usage())
        self._check(params, index)
        if index < len(self.record.samples):
            return _completion(self.record.samples[index])
        started = time.monotonic()
        made = await self.backend.complete(messages, params)
        self.record.seconds += time.monotonic() - started
        self.record.samples.append(_sample(made))
        self.made += 1
        return made

    def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        return self._stream(messages, params)

    async def _stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        answer = await self.complete(messages, params)
        yield Delta(text=answer.text, finish_reason=answer.finish_reason, usage=answer.usage)

    def _check(self, params: SamplingParams, index: int) -> None:
        key = _settings_key(params, index)
        if not self.record.samples:
            self.record.params = key
        elif key != self.record.params:
            raise ReplayMismatch("selection asked for samples drawn otherwise than recorded")


class _SamplerReplay(_Replay):
    async def sample(
        self, messages: Sequence[Message], params: SamplingParams, k: int
    ) -> list[Completion]:
        self._check(params, 0)
        if k > len(self.record.samples):
            assert isinstance(self.backend, Sampler)
            started = time.monotonic()
            made = await self.backend.sample(messages, params, k)
            self.record.seconds = time.monotonic() - started
            self.record.samples = [_sample(answer) for answer in made]
            self.made += len(made)
        return [_completion(s) for s in self.record.samples[:k]]


class _ScorerReplay(_Replay):
    async def likelihood(self, messages: Sequence[Message], answer: str) -> Likelihood:
        key = fingerprint(answer)
        known = self.record.likelihoods.get(key)
        if known is not None:
            return Likelihood(known, 0, Usage())
        assert isinstance(self.backend, Scorer)
        scored = await self.backend.likelihood(messages, answer)
        self.record.likelihoods[key] = scored.mean_logprob
        return scored


class _SamplerScorerReplay(_SamplerReplay, _ScorerReplay):
    pass


def replay(backend: Backend, draft: str, record: SampleRecord) -> _Replay:
    """A replay that batches and scores where ``backend`` does, as select would find it."""
    sampler, scorer = isinstance(backend, Sampler), isinstance(backend, Scorer)
    if sampler and scorer:
        return _SamplerScorerReplay(backend, draft, record)
    if sampler:
        return _SamplerReplay(backend, draft, record)
    return _ScorerReplay(backend, draft, record) if scorer else _Replay(backend, draft, record)


def _sample(answer: Completion) -> Sample:
    return Sample(answer.text, answer.finish_reason, answer.usage.completion_tokens)


def _completion(sample: Sample) -> Completion:
    return Completion(sample.text, sample.finish_reason, Usage(0, sample.completion_tokens))
