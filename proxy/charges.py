"""What one answer's model calls cost, as they finish: refinement (``proxy.refine``) and
selection (``proxy.selection.select``) charge each finished call here, to the answering
model's budget, and report the running ``Usage`` and the ``CallRecord``s it keeps."""

from __future__ import annotations

import time

from proxy.results import CallRecord, Usage
from routing.budget import ModelBudget


class Charges:
    """The calls of one answer on one model, charged to ``budget`` as they finish."""

    def __init__(self, budget: ModelBudget, model: str) -> None:
        self.budget = budget
        self.model = model
        self.usage = Usage()
        self.calls: list[CallRecord] = []

    def charge(self, usage: Usage, call: str, number: int, started_ns: int) -> None:
        """A finished call (``call`` and its ``number``, see ``CallRecord``) that started at
        ``started_ns``: its cost drawn from the budget, its usage added, its record kept."""
        self.usage = self.usage + usage
        cost = self.budget.charge(usage.prompt_tokens, usage.completion_tokens)
        elapsed = (time.time_ns() - started_ns) / 1e9
        self.calls.append(CallRecord(call, number, usage, started_ns, elapsed, self.model, cost))
