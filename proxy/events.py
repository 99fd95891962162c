"""What serving a request reports as it goes: one set of events, from the refinement loop
(``proxy.refine``) through the pipeline (``proxy.pipeline``) to the response
(``proxy.response``), never renamed on the way.

    Started(choice)                     a choice's first model call began producing output
    RoundStarted(choice, round, of)     a hidden refinement round began
    Sampled(choice, made, of)           selection: ``made`` of the ``of`` planned answers exist
    AnswerDelta(choice, text, logprobs) a piece of a choice's final answer, streamed live
    Finished(choice, result)            a choice's final answer (``proxy.refine.Refined``)
    Committed(model, fallbacks)         the pipeline: the answering model has begun, after
                                        ``fallbacks`` failed; a stream's headers leave now
    Done(outcome)                       the pipeline: every choice finished; what it cost
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.results import Outcome, Refined


@dataclass(frozen=True, slots=True)
class Started:
    choice: int


@dataclass(frozen=True, slots=True)
class RoundStarted:
    choice: int
    round: int
    of: int


@dataclass(frozen=True, slots=True)
class Sampled:
    choice: int
    made: int
    of: int


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    choice: int
    text: str
    logprobs: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class Finished:
    choice: int
    result: Refined


@dataclass(frozen=True, slots=True)
class Committed:
    model: str
    fallbacks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Done:
    outcome: Outcome


ChoiceEvent = Started | RoundStarted | Sampled | AnswerDelta | Finished
Event = ChoiceEvent | Committed | Done
