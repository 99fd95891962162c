"""Profile ``perfics serve`` under the benchmark's load with py-spy (``pip install py-spy``;
not a project dependency).

    python -m benchmarks.profile_server [--scenario json-c16] [--requests 8000] [--out FILE]
                                        [--key]

Starts the stub and perfics as in the latency benchmark, warms up, attaches
``py-spy record --format raw`` to the perfics process while the generator sends ``--requests``
requests, then prints the functions with the most samples, by their own time and including
what they call. The raw, collapsed stacks stay in ``--out`` (a flame graph tool reads them).
``--key``: the requests carry a key with a budget and rate limits, kept in a scratch SQLite
store (what ``python -m benchmarks --only keys`` measures as keys-sqlite).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.keys import make_key
from benchmarks.latency import HEADERS, scenarios
from benchmarks.loadgen import Target, build_request, run_load
from benchmarks.processes import HOST, start_stub
from benchmarks.servers import perfics_policy, start_perfics


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_server", description=__doc__
    )
    keys = [s.key for s in scenarios(quick=False)]
    parser.add_argument("--scenario", choices=keys, default="json-c16")
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--key", action="store_true", help="a budgeted, rate-limited key")
    parser.add_argument("--out", type=Path, default=Path("perfics-profile.txt"))
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    scenario = next(s for s in scenarios(quick=False) if s.key == args.scenario)
    with tempfile.TemporaryDirectory(prefix="perfics-profile-") as scratch:
        stub = start_stub()
        proxy = None
        try:
            headers, env = HEADERS, {}
            if args.key:
                env["PERFICS_DATABASE_URL"] = f"sqlite:///{scratch}/keys.db"
                headers = {"authorization": f"Bearer {make_key(env['PERFICS_DATABASE_URL'])}"}
            proxy = start_perfics(perfics_policy(stub.port), Path(scratch), env=env)
            target = Target(HOST, proxy.port)
            raw = build_request(target, scenario.body(), headers)

            def load(total: int) -> float:
                result = asyncio.run(
                    run_load(
                        target,
                        raw,
                        total=total,
                        concurrency=scenario.concurrency,
                        expect=scenario.expect,
                        time_limit_s=300,
                    )
                )
                return len(result.latencies_s) / result.wall_s

            load(500)
            record = [py_spy, "record", "-p", str(proxy.pid), "-f", "raw", "-o", str(args.out)]
            spy = subprocess.Popen(
                [*record, "-r", str(args.rate), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
            rps = load(args.requests)
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        finally:
            if proxy is not None:
                proxy.stop()
            stub.stop()
    print(f"{args.scenario}: {rps:.0f} req/s under py-spy; stacks in {args.out}\n")
    print(summary(args.out, args.top))
    return 0


def summary(path: Path, top: int) -> str:
    """The ``top`` frames by own samples and by inclusive samples, in percent of all."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "including callees:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
