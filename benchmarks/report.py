"""The benchmark's tables (Markdown, for stdout and the README) and the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

TARGETS = ("direct", "perfics", "litellm")
LABELS = {"direct": "stub direct", "perfics": "perfics", "litellm": "LiteLLM"}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _ms(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def latency_table(latency: dict[str, Any]) -> str:
    lines = [
        "| scenario | target | median ms | p99 ms | added median ms | added p99 ms | req/s "
        "| server CPU µs/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in latency["scenarios"].values():
        for target in TARGETS:
            row = scenario["results"].get(target)
            if row is None:
                continue
            cpu = row["server_cpu_us_per_request"]
            lines.append(
                f"| {scenario['label']} | {LABELS[target]} | {_ms(row['median_ms'])} "
                f"| {_ms(row['p99_ms'])} | {_ms(row.get('added_median_ms'), sign=True)} "
                f"| {_ms(row.get('added_p99_ms'), sign=True)} | {row['rps']:.0f} "
                f"| {cpu:.0f} | {row['errors']} |"
            )
    return "\n".join(lines)


def ratio_table(latency: dict[str, Any]) -> str:
    lines = [
        "| scenario | perfics / direct req/s | perfics / LiteLLM req/s "
        "| LiteLLM added median / perfics added median |",
        "|---|---:|---:|---:|",
    ]
    for scenario in latency["scenarios"].values():
        ratios = scenario["ratios"]
        lines.append(
            f"| {scenario['label']} | {ratios['perfics_over_direct_rps']:.2f} "
            f"| {_ratio(ratios.get('perfics_over_litellm_rps'))} "
            f"| {_ratio(ratios.get('litellm_over_perfics_added_median'))} |"
        )
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def embedded_table(embedded: dict[str, Any]) -> str:
    lines = [
        "| side | time to first token ms | decode tokens/s | end-to-end tokens/s | tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (("in_process", "llama-cpp-python in-process"), ("perfics", "perfics")):
        side = embedded[name]
        lines.append(
            f"| {label} | {side['ttft_ms']:.1f} | {side['decode_tps']:.1f} "
            f"| {side['end_to_end_tps']:.1f} | {side['tokens']:.0f} |"
        )
    lines.append(
        f"| perfics / in-process | | {embedded['decode_ratio']:.3f} "
        f"| {embedded['end_to_end_ratio']:.3f} | |"
    )
    return "\n".join(lines)


def memory_table(memory: dict[str, Any]) -> str:
    lines = ["| requests served | perfics RSS MB |", "|---:|---:|"]
    lines += [f"| {s['requests']} | {s['rss_mb']:.1f} |" for s in memory["samples"]]
    lines.append(f"| growth | {memory['growth_pct']:+.1f}% |")
    return "\n".join(lines)
