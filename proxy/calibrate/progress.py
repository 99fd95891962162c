"""A plain-text progress bar with an ETA, redrawn in place with ``\\r`` on a text stream.

Work is counted in weighted units (an answer with R rounds costs about 1 + 2R model calls, a
grade one); units found in the cache are removed from the total before timing starts, so the
ETA reflects only the work this run really does. Redraws are throttled to a few per second.
"""

from __future__ import annotations

import time
from typing import TextIO

_WIDTH = 24


class Progress:
    def __init__(self, total: float, stream: TextIO | None, *, min_interval_s: float = 0.5):
        self.total = max(total, 0.0)
        self.done = 0.0
        self.stream = stream
        self.min_interval_s = min_interval_s
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._width = 0

    def skip(self, units: float) -> None:
        """Units that turned out not to need doing (cached)."""
        self.total = max(self.total - units, self.done)
        self._draw(force=False, label="")

    def advance(self, units: float, label: str) -> None:
        self.done = min(self.done + units, self.total)
        self._draw(force=False, label=label)

    def close(self) -> None:
        self._draw(force=True, label="done")
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()

    def line(self, label: str) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = round(fraction * _WIDTH)
        elapsed = time.monotonic() - self._started
        if self.done and self.done < self.total:
            eta = _clock(elapsed / self.done * (self.total - self.done))
        else:
            eta = "--:--" if self.done < self.total else "0:00"
        bar = "#" * filled + "." * (_WIDTH - filled)
        return f"[{bar}] {fraction:4.0%} elapsed {_clock(elapsed)} eta {eta} {label}"

    def _draw(self, *, force: bool, label: str) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < self.min_interval_s:
            return
        self._drawn_at = now
        text = self.line(label)
        padding = " " * max(self._width - len(text), 0)
        self._width = len(text)
        self.stream.write("\r" + text + padding)
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
