"""perfics beside LiteLLM, in one run: latency and throughput, the embedded path, memory, and
what metrics add (metrics off vs on, side by side).

    python -m benchmarks [--quick] [--only latency,embedded,memory,keys,metrics,sampling]
                         [--skip-litellm]
                         [--rounds N] [--embedded-threads N] [--results DIR]

Every server is a child process on 127.0.0.1, stopped when the run ends. Tables go to stdout
(Markdown), everything measured to ``benchmarks/results/<timestamp>.json``. What each part
measures, and how, is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import embedded, keys, latency, memory, metrics_overhead, report, sampling
from benchmarks.processes import ROOT, Server, start_stub
from benchmarks.servers import ensure_litellm, perfics_policy, start_litellm, start_perfics

PARTS = ("latency", "embedded", "memory", "keys", "metrics", "sampling")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    parts = args.only.split(",") if args.only else list(PARTS)
    unknown = set(parts) - set(PARTS)
    if unknown:
        sys.exit(f"--only takes {', '.join(PARTS)}; not {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": report.machine(),
        "settings": {"quick": args.quick, "rounds": args.rounds, "litellm": not args.skip_litellm},
    }
    with tempfile.TemporaryDirectory(prefix="perfics-bench-") as scratch:
        workdir = Path(scratch)
        if "latency" in parts:
            results["latency"] = _latency(workdir, args)
        if "memory" in parts:
            results["memory"] = _memory(workdir, args)
        if "keys" in parts:
            results["keys"] = keys.run(workdir, quick=args.quick, rounds=args.rounds)
        if "embedded" in parts:
            print("embedded: perfics vs llama-cpp-python in-process ...", flush=True)
            repetitions = 2 if args.quick else 3
            results["embedded"] = embedded.run(workdir, repetitions, args.embedded_threads)
        if "metrics" in parts:
            results["metrics"] = metrics_overhead.run(workdir, quick=args.quick, rounds=args.rounds)
        if "sampling" in parts:
            print("sampling: k samples in one llama.cpp batch ...", flush=True)
            repetitions = 2 if args.quick else 3
            results["sampling"] = sampling.run(repetitions, args.embedded_threads)
    _print(results)
    _print_keys(results)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests")
    parser.add_argument("--only", help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--skip-litellm", action="store_true", help="perfics and direct only")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (4)")
    parser.add_argument(
        "--embedded-threads",
        type=int,
        help="llama.cpp threads on both sides of the embedded part (the backend's default)",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    return parser


def _latency(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    stub = start_stub(workdir / "stub.log")
    servers: dict[str, Server] = {"direct": stub}
    try:
        ceiling = asyncio.run(latency.generator_ceiling(stub, 2000 if args.quick else 8000))
        print(
            f"load generator against the stub: raw sockets {ceiling['raw_sockets_rps']:.0f} "
            f"req/s, httpx {ceiling['httpx_rps']:.0f} req/s (c=16)",
            flush=True,
        )
        servers["perfics"] = start_perfics(perfics_policy(stub.port), workdir)
        if not args.skip_litellm:
            print("LiteLLM: preparing benchmarks/.venv-litellm ...", flush=True)
            command = ensure_litellm(workdir / "litellm-install.log")
            servers["litellm"] = start_litellm(command, stub.port, workdir)
        rss_start = {name: s.rss_mb() for name, s in servers.items() if name != "direct"}
        scenarios: dict[str, Any] = {}
        for scenario in latency.scenarios(quick=args.quick):
            label = f"{scenario.name}, c={scenario.concurrency}"
            print(f"latency: {label} ...", flush=True)
            results = asyncio.run(latency.measure(servers, scenario, args.rounds))
            scenarios[scenario.key] = {
                "label": label,
                "requests_per_target": scenario.requests,
                "results": results,
                "ratios": _ratios(results),
            }
        rss_end = {name: s.rss_mb() for name, s in servers.items() if name != "direct"}
    finally:
        for server in reversed(servers.values()):
            server.stop()
    return {
        "generator_ceiling": ceiling,
        "stub_rps_c16": scenarios["json-c16"]["results"]["direct"]["rps"],
        "rss_mb": {"at_start": rss_start, "after_latency_runs": rss_end},
        "scenarios": scenarios,
    }


def _ratios(results: dict[str, Any]) -> dict[str, float]:
    perfics, direct = results["perfics"], results["direct"]
    ratios = {"perfics_over_direct_rps": perfics["rps"] / direct["rps"]}
    litellm = results.get("litellm")
    if litellm is not None:
        ratios["perfics_over_litellm_rps"] = perfics["rps"] / litellm["rps"]
        if perfics["added_median_ms"] > 0:
            ratios["litellm_over_perfics_added_median"] = (
                litellm["added_median_ms"] / perfics["added_median_ms"]
            )
    return ratios


def _memory(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    requests = 4000 if args.quick else 20000
    print(f"memory: perfics RSS over {requests} requests ...", flush=True)
    stub = start_stub()
    try:
        return asyncio.run(memory.run(stub, workdir, requests))
    finally:
        stub.stop()


def _print(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"\nmachine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}")
    if "latency" in results:
        lat = results["latency"]
        ceiling = lat["generator_ceiling"]
        print(
            "\nLatency and throughput: a fixed-answer stub upstream direct, through perfics "
            "(one upstream call per request: refinement rounds 0) and through LiteLLM's proxy.\n"
            f"Load generator ceiling against the stub (c=16): raw sockets "
            f"{ceiling['raw_sockets_rps']:.0f} req/s (used), httpx {ceiling['httpx_rps']:.0f} "
            f"req/s.\n"
        )
        print(report.latency_table(lat))
        print()
        print(report.ratio_table(lat))
        print(
            f"\nRSS MB at start: {_mb(lat['rss_mb']['at_start'])}; after the latency runs: "
            f"{_mb(lat['rss_mb']['after_latency_runs'])}"
        )
    if "memory" in results:
        print("\nMemory: perfics with no model loaded (openai backend only), non-streaming, c=16\n")
        print(report.memory_table(results["memory"]))
    if "embedded" in results:
        print(
            "\nEmbedded: bundled SmolLM2-135M, greedy, 200 tokens, "
            f"{results['embedded']['n_threads']} llama.cpp thread(s) on both sides, streamed "
            "through perfics (rounds 0) vs llama-cpp-python in-process; median of the "
            "repetitions\n"
        )
        print(report.embedded_table(results["embedded"]))
    if "metrics" in results:
        print(
            "\nMetrics: perfics with metrics off and on, side by side in front of the stub, "
            "interleaved; added = median minus the stub's\n"
        )
        print(metrics_overhead.table(results["metrics"]))
    if "sampling" in results:
        print(
            "\nSampling: bundled SmolLM2-135M in-process, "
            f"{results['sampling']['threads']} llama.cpp thread(s), "
            f"{results['sampling']['max_tokens']} tokens per sequence, temperature 0.8; "
            "median of the repetitions\n"
        )
        print(sampling.table(results["sampling"]))


def _print_keys(results: dict[str, Any]) -> None:
    if "keys" in results:
        print(
            "\nKeys: a key with a budget, requests- and tokens-per-minute limits and the ledger, "
            "beside keys off, and keys off under --workers 2 (non-streaming, stub upstream)\n"
        )
        print(keys.table(results["keys"]))


def _mb(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {mb:.0f}" for name, mb in values.items())


if __name__ == "__main__":
    sys.exit(main())
