"""The servers a benchmark starts: each a child process on 127.0.0.1, stopped on exit.

``Server`` starts a command, waits until a readiness URL answers 200, and reads the child's
CPU time and resident memory from ``/proc`` so each run can report what the server spent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """A child process serving HTTP on ``127.0.0.1:port``, run in ``cwd``."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        port: int,
        ready_path: str,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        ready_timeout_s: float = 120,
        ready_headers: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.port = port
        self._log = log.open("ab") if log is not None else None
        self.proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL,
        )
        try:
            self._wait_ready(ready_path, ready_timeout_s, ready_headers or {})
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self, path: str, timeout_s: float, headers: Mapping[str, str]) -> None:
        deadline = time.monotonic() + timeout_s
        request = urllib.request.Request(f"http://{HOST}:{self.port}{path}", headers=dict(headers))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} was not ready on port {self.port} in {timeout_s:.0f} s")

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far (threads included)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def rss_mb(self) -> float:
        """``VmRSS`` from ``/proc/PID/status``, in MB (10^6 bytes)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
        raise RuntimeError(f"no VmRSS for {self.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def start_stub(log: Path | None = None) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "benchmarks.stub", "--port", str(port)]
    return Server("stub", args, port=port, ready_path="/health", log=log, ready_timeout_s=30)
