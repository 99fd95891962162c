"""The dashboard at ``/dashboard``: one server-rendered HTML page, complete without JavaScript
(``static/dashboard.js`` only refreshes the live figures in place), loading nothing that
perfics does not serve itself.

Sections: the policy's file, hash and ready models; live figures (``proxy.ops.live``:
``LIVE_SECTIONS``); the plan form (a GET form: ``/dashboard/plan?task=&budget_usd=...``
renders the page with every candidate) and the policy task by task
(``proxy.ops.policy_view``), with calibrated and guessed quality figures told apart
(``routing.quality_provenance``); spend by key from the ledger (``KeySpend`` rows, read from
the store by the route); the reload status and history.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from html import escape
from pathlib import Path

from proxy.ops.html import table
from proxy.ops.live import LIVE_SECTIONS, RateSampler, Samples
from proxy.ops.metrics import Metrics, policy_hash
from proxy.ops.policy_view import PlanView, plan_section, policy_section
from routing.policy import Policy
from routing.quality_provenance import calibrated_quality

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class KeySpend:
    """One key's line in the spend table: this period's spend and what is left of its budget,
    and the ledger's totals (requests, cost, what the reference model would have cost)."""

    name: str
    status: str
    period: str
    spent_usd: float
    remaining_usd: float | None
    requests: int
    cost_usd: float
    reference_cost_usd: float | None


@dataclass(frozen=True, slots=True)
class Reload:
    at: float
    ok: bool
    detail: str


class Dashboard:
    """What the page shows beyond the runtime: reloads, calibration marks, the rate sampler."""

    def __init__(self) -> None:
        self.reloads: deque[Reload] = deque(maxlen=10)
        self.calibrated: frozenset[tuple[str, str]] = frozenset()
        self.rate = RateSampler()

    def policy_loaded(self, source: str) -> None:
        try:
            self.calibrated = calibrated_quality(Path(source).read_text(encoding="utf-8"))
        except OSError:
            self.calibrated = frozenset()
        self.reloads.append(Reload(time.time(), True, source))

    def policy_failed(self, error: str) -> None:
        self.reloads.append(Reload(time.time(), False, error))

    def page(
        self,
        policy: Policy,
        source: str,
        ready: frozenset[str],
        metrics: Metrics | None,
        reload_error: str | None,
        plan: PlanView,
        spend: list[KeySpend] | None = None,
    ) -> str:
        body = [
            f"<header><h1>perfics</h1><p>policy <code>{escape(source)}</code>, "
            f"hash <code>{policy_hash(policy)}</code>; models ready: "
            f"{escape(', '.join(sorted(ready)) or 'none')}</p></header>",
            '<nav><a href="#live">live</a> <a href="#plan">plan a request</a> '
            '<a href="#policy">policy</a> <a href="#reloads">reloads</a></nav>',
            '<section id="live" data-refresh="/dashboard/live"><h2>Live</h2>',
            self.live(metrics, spend),
            "</section>",
            plan_section(policy, plan),
            policy_section(policy, self.calibrated),
            self._reloads_section(reload_error),
        ]
        return _document("\n".join(body))

    def live(self, metrics: Metrics | None, spend: list[KeySpend] | None = None) -> str:
        """The live figures (the ``/dashboard/live`` fragment); ``spend`` None: the key store
        could not be read."""
        keys = _spend_section(spend)
        if metrics is None:
            return "<p>Metrics are off (PERFICS_METRICS=off).</p>" + keys
        samples = Samples.of(metrics.collect())
        return "\n".join([*(section(samples, self.rate) for section in LIVE_SECTIONS), keys])

    def _reloads_section(self, reload_error: str | None) -> str:
        status = (
            f'<p class="bad">The last reload failed; the policy above is still served.</p>'
            f"<pre>{escape(reload_error)}</pre>"
            if reload_error
            else '<p class="good">The last reload succeeded.</p>'
        )
        rows = [
            (
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.at)) + " UTC",
                "loaded" if event.ok else "failed",
                event.detail.splitlines()[0] if event.detail else "",
            )
            for event in reversed(self.reloads)
        ]
        return (
            '<section id="reloads"><h2>Policy reloads</h2>'
            + status
            + table(("when", "result", "file or first problem"), rows)
            + "</section>"
        )


def _spend_section(spend: list[KeySpend] | None) -> str:
    head = "<h3>Spend by key</h3>"
    if spend is None:
        return head + '<p class="bad">The key store is unavailable.</p>'
    if not spend:
        return head + "<p>No keys yet (<code>perfics keys create</code>).</p>"
    rows = [
        (
            line.name,
            line.status,
            line.period,
            _usd(line.spent_usd),
            "unlimited" if line.remaining_usd is None else _usd(line.remaining_usd),
            str(line.requests),
            _usd(line.cost_usd),
            "-"
            if line.reference_cost_usd is None
            else _usd(line.reference_cost_usd - line.cost_usd),
        )
        for line in spend
    ]
    header = (
        "key",
        "status",
        "period",
        "spent this period",
        "left",
        "requests (ledger)",
        "cost (ledger)",
        "saving vs reference",
    )
    return head + table(header, rows, "key-spend")


def _usd(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"


def _document(body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>perfics dashboard</title>"
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/dashboard/static/dashboard.css"></head><body>'
        f"{body}"
        '<script src="/dashboard/static/dashboard.js" defer></script></body></html>'
    )


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file of ``static/`` and its content type, or None for any other name."""
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or path.parent != STATIC or not path.is_file():
        return None
    return path.read_bytes(), kind
