"""Running untrusted Python, such as a model's answer to a coding question, in a subprocess.

``run_python(source, timeout_s=...)`` runs ``source`` in a fresh interpreter and reports how it
ended. It is meant for model-written code that loops forever, allocates without bound, writes
without bound, forks, starts programs, deletes files or reaches for the network, by mistake or
by a test-gaming shortcut. It is not a security boundary against a determined attacker.

What it does:

- the child runs with ``-S -P -B`` (no site-packages, no script directory on ``sys.path``, no
  bytecode written) in a fresh temporary directory that is its working directory, ``HOME`` and
  ``TMPDIR``, deleted afterwards;
- its environment is built from nothing: a minimal ``PATH``, UTF-8, ``PYTHONHASHSEED=0`` (so
  set order, and so output, repeats from run to run), no proxy variables;
- it lowers its own limits before the candidate runs (``sandbox_child``): address space
  (``memory_mb``), CPU seconds (``cpu_s``, default the timeout rounded up plus one), file size
  (10 MB, which also bounds what stdout and stderr can hold: they are files in the temporary
  directory, of which only the last 64 KB are read back), 64 open files, no core dumps;
- an audit hook refuses process creation, signals, sockets and name resolution, ``ctypes``, and
  writes outside the temporary directory (the full list is in ``sandbox_child``);
- it runs as the leader of a new session and process group, and the whole group is killed
  (``SIGKILL``) when the run ends, by itself or after ``timeout_s`` of wall time, so that
  nothing it started in its group outlives it.

Known gaps: the audit hook lives in the same interpreter as the candidate, so code written to
defeat it (through the C API, interpreter internals or a crafted path object) may; reading
files is allowed anywhere the user running perfics may read; the disk can be filled with many
files of up to 10 MB each within the timeout; a process that escaped both the hook and the
process group (a new session) would survive. ``RLIMIT_NPROC`` is not set: it counts every
process and thread of the user, so no value is both effective and harmless, and root ignores
it. For hostile code, run the grader inside a container or VM.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_CHILD = Path(__file__).with_name("sandbox_child.py")
_FILE_MB = 10
_OPEN_FILES = 64
_TAIL_BYTES = 64 * 1024
_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """How a sandboxed run ended. ``returncode`` is negative for a signal (``-9`` for
    ``SIGKILL``). ``killed_reason`` says what ended it when that was not the program itself:
    ``"timeout"``, ``"memory"`` (a ``MemoryError``), ``"cpu"`` (the CPU-time limit),
    ``"file size"`` (the file-size limit), or ``"signal SIGSEGV"`` and the like; ``None`` when
    the program ended by itself, successfully or with an exception."""

    returncode: int
    timed_out: bool
    stdout_tail: str
    stderr_tail: str
    killed_reason: str | None

    @property
    def last_error_line(self) -> str:
        """The last non-blank line of stderr, stripped: for an uncaught exception, its type and
        message (``"AssertionError"``, ``"NameError: name 'x' is not defined"``)."""
        return _last_line(self.stderr_tail)


def run_python(
    source: str, *, timeout_s: float, memory_mb: int = 512, cpu_s: int | None = None
) -> SandboxResult:
    """Run ``source`` as a Python program in the sandbox (see the module docstring) and wait
    for it, at most ``timeout_s`` seconds of wall time. Never raises for anything ``source``
    does; raises ``OSError`` only when the sandbox cannot be set up (no temporary directory, no
    interpreter)."""
    cpu_limit = cpu_s if cpu_s is not None else math.ceil(timeout_s) + 1
    with tempfile.TemporaryDirectory(prefix="perfics-sandbox-", ignore_cleanup_errors=True) as tmp:
        (Path(tmp) / "candidate.py").write_text(source, encoding="utf-8")
        argv = [sys.executable, "-S", "-P", "-B", str(_CHILD), tmp, "candidate.py"]
        argv += [str(memory_mb), str(cpu_limit), str(_FILE_MB), str(_OPEN_FILES)]
        with open(Path(tmp) / "stdout", "w+b") as stdout, open(Path(tmp) / "stderr", "w+b") as err:
            returncode, timed_out = _run_in_new_session(argv, tmp, timeout_s, stdout, err)
            stdout_tail, stderr_tail = _tail(stdout), _tail(err)
    return SandboxResult(
        returncode=returncode,
        timed_out=timed_out,
        stdout_tail=stdout_tail,
        stderr_tail=stderr_tail,
        killed_reason=_killed_reason(returncode, timed_out, stderr_tail),
    )


def _run_in_new_session(
    argv: list[str], cwd: str, timeout_s: float, stdout: BinaryIO, stderr: BinaryIO
) -> tuple[int, bool]:
    """Run ``argv`` as the leader of a new session and process group, in the sandbox's
    environment, and wait for it; SIGKILL the whole group after ``timeout_s`` and, whatever
    happened, once more when it has ended. Returns ``(returncode, timed_out)``."""
    child = subprocess.Popen(
        argv,
        cwd=cwd,
        env=_environment(cwd),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    timed_out = False
    try:
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _kill_group(child.pid)
        child.wait()
    return child.returncode, timed_out


def _environment(home: str) -> dict[str, str]:
    return {
        "PATH": _PATH,
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUTF8": "1",
    }


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, signal.SIGKILL)


def _tail(stream: BinaryIO) -> str:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _TAIL_BYTES))
    return stream.read().decode("utf-8", "replace")


def _killed_reason(returncode: int, timed_out: bool, stderr: str) -> str | None:
    if timed_out:
        return "timeout"
    if returncode == -signal.SIGXCPU:
        return "cpu"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    last = _last_line(stderr)
    if last.startswith("MemoryError"):
        return "memory"
    if "[Errno 27]" in last:  # EFBIG: past the file-size limit
        return "file size"
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
