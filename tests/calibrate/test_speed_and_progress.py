"""Throughput arithmetic, the timing wrapper, and the progress line."""

from __future__ import annotations

import io

from proxy.backends.base import Completion, SamplingParams
from proxy.backends.scripted import ScriptedBackend
from proxy.calibrate.progress import Progress
from proxy.calibrate.throughput import CallTiming, TimedBackend, throughput
from proxy.results import Usage


def test_throughput_is_token_weighted() -> None:
    speed = throughput([CallTiming(100, 11, 0.11, 0.21), CallTiming(300, 21, 0.31, 0.51)])
    # first pieces: 0.11 s and 0.31 s, less one decoded token each (0.01 s) = 0.4 s for 400
    assert speed.prefill_tokens_per_s == 1000.0
    assert speed.decode_tokens_per_s == 100.0  # 30 tokens after the first in 0.3 s
    assert speed.calls == 2
    assert throughput([]).prefill_tokens_per_s is None


async def test_timed_backend_counts_only_tokens_actually_read() -> None:
    inner = ScriptedBackend("m", [Completion("hi there", "stop", Usage(50, 2, 8))])
    timed = TimedBackend(inner)
    completion = await timed.complete([{"role": "user", "content": "x"}], SamplingParams())
    assert completion.text == "hi there"
    timing, result = timed.calls[0]
    assert result == completion
    assert (timing.prompt_tokens, timing.completion_tokens) == (8, 2)
    assert 0 <= timing.first_s <= timing.total_s
    assert inner.calls[0].streamed


def test_progress_line_and_eta() -> None:
    stream = io.StringIO()
    progress = Progress(10, stream, min_interval_s=0)
    progress.skip(2)
    assert progress.total == 8
    progress.advance(4, "answered m q1")
    line = progress.line("x")
    assert "50%" in line
    assert "eta" in line
    assert "--:--" not in line
    progress.advance(4, "graded m q1 r0")
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\r[")
    assert text.endswith("\n")
    assert "answered m q1" in text
    assert "100%" in text
