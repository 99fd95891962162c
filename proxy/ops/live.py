"""The dashboard's live figures, read from the same metric families ``/metrics`` serves (so in
multiprocess mode they cover every worker), and the request rate from the dashboard's own
recent samples of the request count.

Percentiles are estimated from histogram buckets as Prometheus's ``histogram_quantile`` does:
linear within the bucket holding the rank, the largest finite bound when it falls above.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

Labels = tuple[tuple[str, str], ...]
RATE_WINDOW_S = 60.0


@dataclass(slots=True)
class Samples:
    """Sample values by sample name, then by label set."""

    values: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def of(cls, families: Iterable[Metric]) -> Samples:
        found = cls()
        for family in families:
            for sample in family.samples:
                found.values[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
        return found

    def total(self, name: str, **match: str) -> float:
        return sum(v for labels, v in self.by(name).items() if _matches(labels, match))

    def by(self, name: str) -> Mapping[Labels, float]:
        return self.values.get(name, {})

    def grouped(self, name: str, *keys: str, **match: str) -> dict[tuple[str, ...], float]:
        """``name`` summed by the values of ``keys``, over the samples matching ``match``."""
        sums: dict[tuple[str, ...], float] = defaultdict(float)
        for labels, value in self.by(name).items():
            if _matches(labels, match):
                found = dict(labels)
                sums[tuple(found.get(key, "") for key in keys)] += value
        return dict(sums)

    def quantile(self, histogram: str, q: float, **match: str) -> float | None:
        """The ``q`` quantile of ``histogram`` over the matching series, or None when empty."""
        buckets: dict[float, float] = defaultdict(float)
        for labels, value in self.by(f"{histogram}_bucket").items():
            if _matches(labels, match):
                buckets[float(dict(labels)["le"])] += value
        bounds = sorted(buckets)
        if not bounds or buckets[bounds[-1]] == 0:
            return None
        rank = q * buckets[bounds[-1]]
        lower, below = 0.0, 0.0
        for bound in bounds:
            count = buckets[bound]
            if count >= rank:
                if bound == float("inf"):
                    return lower
                if count == below:
                    return bound
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower


class RateSampler:
    """The request rate over about the last minute, from counts sampled at each render."""

    def __init__(self, clock: float | None = None) -> None:
        self.started = time.monotonic() if clock is None else clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=240)

    def rate(self, total: float, now: float | None = None) -> tuple[float, str]:
        """(requests per second, over what): over the samples of the last minute when there
        are two, else since the process started."""
        now = time.monotonic() if now is None else now
        self._samples.append((now, total))
        while self._samples and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        first_time, first_total = self._samples[0]
        if now - first_time >= 1.0:
            return (total - first_total) / (now - first_time), f"last {now - first_time:.0f} s"
        uptime = max(now - self.started, 1e-9)
        return total / uptime, "since start"


def _matches(labels: Labels, match: Mapping[str, str]) -> bool:
    if not match:
        return True
    found = dict(labels)
    return all(found.get(key) == value for key, value in match.items())
