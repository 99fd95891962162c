"""What serving a request produced and cost, as values every reader shares: the response, the
spend ledger, the metrics and the traces read the same ``Outcome`` (or, for a request that
failed, the ``Spent`` its error carries). The bottom of the service's layers: it imports
nothing from the service.

    Usage        one call's tokens (and its sum over calls)
    CallRecord   one finished call: kind, tokens, model, cost, timing
    Review       the verdict on one rewrite (``proxy.acceptance``)
    RoundTrace   one refinement round, for ``X-Perfics-Trace``
    Refined      one choice's final answer and how it came about
    Spent        what a request's calls cost, every model it tried
    Outcome      a request's answers and what it spent
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Rule = Literal["all", "answers", "likelier"]
StopReason = str  # max_rounds | no_issues | budget | not_refinable


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call. ``evaluated_prompt_tokens`` is what the backend actually had
    to read (prompt tokens minus those served from a prefix cache), when it knows."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    evaluated_prompt_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        evaluated = None
        if self.evaluated_prompt_tokens is not None and other.evaluated_prompt_tokens is not None:
            evaluated = self.evaluated_prompt_tokens + other.evaluated_prompt_tokens
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            evaluated,
        )

    def to_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


TokenLogprob = Mapping[str, Any]
"""One token's entry of OpenAI's ``logprobs.content``: ``token``, ``logprob``, ``bytes`` and
``top_logprobs`` (a list of the same without ``top_logprobs``)."""

NO_USAGE = Usage(0, 0, 0)  # a call that was not made: nothing read, nothing unknown


@dataclass(frozen=True, slots=True)
class Review:
    """The verdict on one rewrite under ``rule``, and what reaching it cost. ``verdicts``
    holds the verdict of every rule that was evaluated (all of them with ``record_all``)."""

    rule: Rule
    kept: bool
    reason: str | None  # why it was discarded, None when kept: see non_answer, less_likely
    verdicts: dict[str, bool]
    usage: Usage = field(default_factory=lambda: NO_USAGE)
    calls: int = 0
    likelihoods: tuple[float, float] | None = None  # (answer in hand, rewrite)


@dataclass(frozen=True, slots=True)
class RoundTrace:
    round: int
    critique: str
    critique_usage: Usage
    rewrite: str | None = None
    rewrite_usage: Usage | None = None
    review: Review | None = None

    @property
    def kept(self) -> bool:
        return self.review is not None and self.review.kept

    @property
    def usage(self) -> Usage:
        """Every call of the round: critique, rewrite and the review's scoring calls."""
        usage = self.critique_usage + (self.rewrite_usage or Usage())
        return usage + self.review.usage if self.review is not None else usage

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "round": self.round,
            "usage": self.usage.to_openai(),
            "kept": self.kept,
            "discarded_because": self.review.reason if self.review is not None else None,
            "likelihoods": (
                list(self.review.likelihoods)
                if self.review is not None and self.review.likelihoods
                else None
            ),
        }
        body["critique"] = self.critique
        body["rewrite"] = self.rewrite
        return body


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished model call, as charged: ``call`` is ``draft``, ``critique``, ``rewrite``,
    ``review`` (the acceptance rule's scoring calls), ``sample`` or ``score`` (selection's),
    ``round`` 0 for the draft (a sample's number otherwise); its wall-clock start and duration,
    the ``model`` that made it and what it cost at that model's prices. Read by the ledger,
    metrics and tracing."""

    call: str
    round: int
    usage: Usage
    started_ns: int
    duration_s: float
    model: str = ""
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Refined:
    """A choice's final answer and how it came about: the rounds of refinement, or (selection)
    the ``samples`` made and the rule that chose (``selected_by``: ``checks``, ``agreement``,
    ``likelihood`` or ``draft``; None without selection)."""

    text: str
    finish_reason: str
    tool_calls: tuple[Mapping[str, Any], ...]
    usage: Usage
    rounds: int
    stop_reason: StopReason
    trace: tuple[RoundTrace, ...]
    streamed: bool
    logprobs: tuple[TokenLogprob, ...] = ()
    calls: tuple[CallRecord, ...] = ()
    samples: int = 1
    selected_by: str | None = None


@dataclass(frozen=True, slots=True)
class Spent:
    """What a request's finished calls cost, every model it tried included: their tokens
    (``usage``), their cost as charged (``cost_usd``: each call at its model's prices) and the
    calls themselves."""

    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    calls: tuple[CallRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the request answered and spent; the source of every outcome header, the body's
    ``perfics`` object, its ledger row, metrics and spans."""

    model: str
    rounds_planned: int
    choices: tuple[Refined, ...]
    spent: Spent
    fallbacks: tuple[str, ...]
    reference_cost_usd: float | None
    latency_ms: int

    @property
    def usage(self) -> Usage:
        return self.spent.usage

    @property
    def cost_usd(self) -> float:
        return self.spent.cost_usd

    @property
    def failed_calls(self) -> tuple[CallRecord, ...]:
        """The calls of the models that failed before ``model`` answered."""
        return tuple(call for call in self.spent.calls if call.model != self.model)

    @property
    def rounds(self) -> int:
        return self.choices[0].rounds

    @property
    def stop_reason(self) -> str:
        return self.choices[0].stop_reason
