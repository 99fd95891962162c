"""The dashboard's live figures, read from the same metric families ``/metrics`` serves (so in
multiprocess mode they cover every worker), and the request rate from the dashboard's own
recent samples of the request count. ``LIVE_SECTIONS`` renders them, one function a section
(a section such as spend by key is one more entry).

Percentiles are estimated from histogram buckets as Prometheus's ``histogram_quantile`` does:
linear within the bucket holding the rank, the largest finite bound when it falls above.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from proxy.ops.html import figures, seconds, table, usd
from routing.cost import format_usd

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


def _requests_section(samples: Samples, rate: RateSampler) -> str:
    total = samples.total("perfics_requests_total")
    per_second, window = rate.rate(total)
    ok = samples.total("perfics_requests_total", status="200")
    by_status = samples.grouped("perfics_requests_total", "status")
    statuses = ", ".join(
        f"{status} × {count:.0f}" for (status,), count in sorted(by_status.items())
    )
    duration = "perfics_request_duration_seconds"
    cells = [
        ("requests", f"{total:.0f} ({ok:.0f} answered)"),
        ("request rate", f"{per_second:.2f}/s ({window})"),
        ("in flight", f"{samples.total('perfics_requests_in_flight'):.0f}"),
        ("by status", statuses or "none yet"),
    ]
    cells += [
        (f"latency p{int(q * 100)}", seconds(samples.quantile(duration, q)))
        for q in (0.5, 0.9, 0.99)
    ]
    cells += [
        (
            f"time to first token p{int(q * 100)}",
            seconds(samples.quantile("perfics_time_to_first_token_seconds", q)),
        )
        for q in (0.5, 0.99)
    ]
    return figures(cells)


def _rounds_section(samples: Samples, rate: RateSampler) -> str:
    planned_sum = samples.total("perfics_refinement_rounds_planned_sum")
    planned_n = samples.total("perfics_refinement_rounds_planned_count")
    done_sum = samples.total("perfics_refinement_rounds_sum")
    done_n = samples.total("perfics_refinement_rounds_count")
    stops = samples.grouped("perfics_refinement_stops_total", "reason")
    fallbacks = samples.grouped("perfics_fallbacks_total", "model")
    rejected = samples.total("perfics_queue_rejections_total")
    mean_planned = f"{planned_sum / planned_n:.2f}" if planned_n else "-"
    mean_done = f"{done_sum / done_n:.2f}" if done_n else "-"
    stop_text = ", ".join(f"{r} × {n:.0f}" for (r,), n in sorted(stops.items())) or "none yet"
    fallback_text = ", ".join(f"{m} × {n:.0f}" for (m,), n in sorted(fallbacks.items())) or "none"
    cells = [
        ("rounds planned (mean)", mean_planned),
        ("rounds run (mean per choice)", mean_done),
        ("stop reasons", stop_text),
        ("fallbacks (failed model)", fallback_text),
        ("queue full (429)", f"{rejected:.0f}"),
    ]
    return figures(cells)


def _cost_section(samples: Samples, rate: RateSampler) -> str:
    keys = ("model", "task")
    requests = samples.grouped("perfics_requests_total", *keys, status="200")
    cost = samples.grouped("perfics_cost_usd_total", *keys)
    reference = samples.grouped("perfics_reference_cost_usd_total", *keys)
    rows = []
    for key in sorted(set(requests) | set(cost)):
        spent, ref = cost.get(key, 0.0), reference.get(key)
        saving = f"{format_usd(ref - spent)}" if ref is not None else "-"
        share = f"{(ref - spent) / ref:.0%}" if ref else "-"
        rows.append(
            (*key, f"{requests.get(key, 0):.0f}", format_usd(spent), usd(ref), saving, share)
        )
    by_model = table(
        ("model", "task", "answered", "cost USD", "reference USD", "saving USD", "saving"),
        rows,
        "cost-by-model",
    )
    calls = samples.grouped("perfics_calls_total", "call")
    call_cost = samples.grouped("perfics_call_cost_usd_total", "call")
    prompt = samples.grouped("perfics_call_prompt_tokens_total", "call")
    completion = samples.grouped("perfics_call_completion_tokens_total", "call")
    durations = samples.grouped("perfics_call_duration_seconds_sum", "call")
    call_rows = [
        (
            call,
            f"{calls[(call,)]:.0f}",
            f"{prompt.get((call,), 0):.0f}",
            f"{completion.get((call,), 0):.0f}",
            format_usd(call_cost.get((call,), 0.0)),
            seconds(durations.get((call,), 0.0) / calls[(call,)] if calls[(call,)] else None),
        )
        for (call,) in sorted(calls, key=lambda k: _CALL_ORDER.get(k[0], 9))
    ]
    return (
        "<h3>Cost and saving by model and task</h3>"
        + by_model
        + "<h3>What refinement costs: internal calls by kind</h3>"
        + table(
            ("call", "calls", "prompt tokens", "completion tokens", "cost USD", "mean time"),
            call_rows,
            "calls-by-kind",
        )
    )


_CALL_ORDER = {"draft": 0, "critique": 1, "rewrite": 2, "review": 3}

LIVE_SECTIONS: list[Callable[[Samples, RateSampler], str]] = [
    _requests_section,
    _rounds_section,
    _cost_section,
]
"""The live figures, in order: each renders HTML from the samples (a new table is one entry)."""
