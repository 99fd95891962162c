"""A request's budget as a ceiling: what has been spent, and whether the next call may run.

One ``Budget`` per request, shared by its choices (``n``) and by the models it falls back
through: every call is charged at the price of the model that made it, including calls of a
model that then failed. The refinement loop asks it before each round and before each rewrite;
the draft and rewrites are capped at the planned answer length ``a``. Without a declared budget
every question is answered yes and nothing is capped.

Estimates follow ``routing.estimate`` (the contract's token estimate); a round of the
``likelier`` acceptance rule also scores the rewrite and, once, the answer in hand: up to two
prefills of ``p + a`` tokens, counted here though the planner's formula leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.cost import Prices, cost_usd

# Float sums of many small costs may exceed an exact budget by rounding alone.
_SLACK = 1e-12


@dataclass(slots=True)
class Budget:
    """``limit_usd`` None means no budget applies. ``spent_usd`` grows as calls are charged."""

    limit_usd: float | None = None
    spent_usd: float = 0.0

    @property
    def remaining_usd(self) -> float | None:
        return None if self.limit_usd is None else self.limit_usd - self.spent_usd

    def charge(self, prices: Prices, prompt_tokens: int, completion_tokens: int) -> float:
        """Add a call's cost at ``prices``; returns that cost."""
        cost = cost_usd(prices, prompt_tokens, completion_tokens)
        self.spent_usd += cost
        return cost

    def allows(self, usd: float) -> bool:
        """Whether ``usd`` more would stay within the limit."""
        return self.limit_usd is None or self.spent_usd + usd <= self.limit_usd + _SLACK

    def for_model(
        self, prices: Prices, *, critique_tokens: int, template_tokens: int, scoring: bool
    ) -> ModelBudget:
        """This budget as one model's calls see it (its prices, the policy's ``k`` and ``t``,
        and whether its acceptance rule scores answers)."""
        return ModelBudget(self, prices, critique_tokens, template_tokens, scoring)


@dataclass(frozen=True, slots=True)
class ModelBudget:
    """The questions the refinement loop asks, priced for one model."""

    budget: Budget
    prices: Prices
    critique_tokens: int
    template_tokens: int
    scoring: bool

    @property
    def applies(self) -> bool:
        return self.budget.limit_usd is not None

    def charge(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Charge a call to the request's budget at this model's prices; returns its cost."""
        return self.budget.charge(self.prices, prompt_tokens, completion_tokens)

    def allows_round(self, prompt_tokens: int, answer_tokens: int) -> bool:
        """Whether a whole round fits what is left: a critique of ``p + a + t`` in and ``k``
        out, a rewrite of ``p + a + k + t`` in and ``a`` out, and the rule's scoring."""
        p, a, k, t = prompt_tokens, answer_tokens, self.critique_tokens, self.template_tokens
        usd = cost_usd(self.prices, 2 * p + 2 * a + k + 2 * t + self._scoring(p, a), k + a)
        return self.budget.allows(usd)

    def allows_rewrite(self, critique_prompt_tokens: int, critique_tokens: int, a: int) -> bool:
        """Whether the rewrite (and its scoring) still fits once the critique is known: it reads
        the critique's prompt, the critique and the rewrite prompt, and writes up to ``a``."""
        prompt = critique_prompt_tokens + critique_tokens + self.template_tokens
        p = max(critique_prompt_tokens - a - self.template_tokens, 0)
        usd = cost_usd(self.prices, prompt + self._scoring(p, a), a)
        return self.budget.allows(usd)

    def allows_samples(self, prompt_tokens: int, answer_tokens: int, samples: int) -> bool:
        """Whether ``samples`` more answers fit what is left, each read as ``p`` in and
        written as ``a`` out (a backend that shares the prompt across them reads it once: it
        costs less, never more), plus scoring ``p + a`` each when the model ranks by
        likelihood."""
        p, a = prompt_tokens, answer_tokens
        usd = cost_usd(self.prices, samples * (p + self._scoring(p, a) // 2), samples * a)
        return self.budget.allows(usd)

    def answer_cap(self, prompt_tokens: int, planned: int) -> int:
        """The most tokens the next answer may have: the planned ``a``, fewer when what is
        left would not pay for ``a`` after reading ``prompt_tokens`` (at least 1)."""
        left = self.budget.remaining_usd
        if left is None:
            return planned
        per_token = self.prices.output_usd_per_mtok / 1e6
        if per_token <= 0:
            return planned
        after_prompt = left - cost_usd(self.prices, prompt_tokens, 0)
        # Compared as floats: a budget near the largest float pays for more tokens than a
        # float holds (inf), which int() cannot take.
        affordable = after_prompt / per_token
        return planned if affordable >= planned else max(1, int(affordable))

    def _scoring(self, p: int, a: int) -> int:
        return 2 * (p + a) if self.scoring else 0


def no_budget() -> ModelBudget:
    """A budget that never stops a round nor caps an answer (calibration, benchmarks)."""
    return Budget().for_model(Prices(0.0, 0.0), critique_tokens=0, template_tokens=0, scoring=False)
