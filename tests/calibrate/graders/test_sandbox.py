"""The sandbox: limits end runaway code, the audit hook refuses processes, signals, sockets and
writes outside the working directory, and nothing a run starts outlives it."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from proxy.pycode.sandbox import _run_in_new_session, run_python


def test_a_plain_program_runs_and_its_output_comes_back() -> None:
    result = run_python("import sys\nprint('out')\nprint('err', file=sys.stderr)", timeout_s=10)
    assert (result.returncode, result.timed_out, result.killed_reason) == (0, False, None)
    assert result.stdout_tail == "out\n"
    assert result.stderr_tail == "err\n"


def test_an_exception_fails_with_its_last_line() -> None:
    result = run_python("assert 1 + 1 == 3, 'bad sum'", timeout_s=10)
    assert result.returncode == 1
    assert result.last_error_line == "AssertionError: bad sum"
    assert result.killed_reason is None


def test_hashing_is_the_same_in_every_run() -> None:
    source = "print(hash('perfics'), list({'a', 'b', 'c', 'd', 'e'}))"
    first, second = run_python(source, timeout_s=10), run_python(source, timeout_s=10)
    assert first.returncode == 0
    assert first.stdout_tail == second.stdout_tail


def test_the_standard_library_and_threads_work() -> None:
    source = (
        "import hashlib, math, re, collections, typing, threading, json\n"
        "P = collections.namedtuple('P', 'a b', defaults=[2])\n"
        "t = threading.Thread(target=print, args=(hashlib.md5(b'x').hexdigest(), P(1)))\n"
        "t.start(); t.join()\n"
    )
    result = run_python(source, timeout_s=10)
    assert result.returncode == 0, result.stderr_tail
    assert result.stdout_tail == "9dd4e461268c8034f5c8564e155c67a6 P(a=1, b=2)\n"


@pytest.mark.slow
def test_an_endless_loop_is_killed_at_the_timeout() -> None:
    started = time.monotonic()
    result = run_python("while True:\n    pass", timeout_s=2)
    assert time.monotonic() - started < 5
    assert result.timed_out
    assert result.killed_reason == "timeout"
    assert result.returncode == -9


@pytest.mark.slow
def test_cpu_time_is_limited_separately() -> None:
    result = run_python("while True:\n    pass", timeout_s=10, cpu_s=1)
    assert not result.timed_out
    assert result.killed_reason == "cpu"


@pytest.mark.parametrize(
    "source",
    ["x = bytearray(10**10)", "chunks = []\nwhile True:\n    chunks.append(bytearray(10**6))"],
)
def test_unbounded_allocation_fails_at_the_memory_limit(source: str) -> None:
    result = run_python(source, timeout_s=10, memory_mb=256)
    assert result.returncode != 0
    assert result.killed_reason == "memory"


def test_output_is_bounded() -> None:
    result = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", timeout_s=10)
    assert result.killed_reason == "file size"
    assert len(result.stdout_tail) <= 64 * 1024


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("import os\nos.fork()", "os.fork"),
        ("import os\nos.forkpty()", "os.forkpty"),
        ("import pty\npty.fork()", "os.fork"),
        ("import os\nos.system('true')", "os.system"),
        ("import os\nos.execv('/bin/true', ['true'])", "os.exec"),
        ("import os\nos.posix_spawn('/bin/true', ['true'], {})", "os.posix_spawn"),
        ("import subprocess\nsubprocess.run(['true'])", "subprocess.Popen"),
        ("import os\nos.popen('true').read()", "subprocess.Popen"),
        (
            "import multiprocessing as mp\nmp.set_start_method('spawn')\n"
            "p = mp.Process(target=print)\np.start()",
            "starting a process",
        ),
        (
            "import multiprocessing as mp\nmp.set_start_method('fork')\n"
            "p = mp.Process(target=print)\np.start()",
            "os.fork",
        ),
        (
            "import _posixsubprocess, importlib\nimportlib.reload(_posixsubprocess)\n"
            "_posixsubprocess.fork_exec()",
            "starting a process",
        ),
        (
            "import sys\ndel sys.modules['_posixsubprocess']\nimport _posixsubprocess",
            "importing _posixsubprocess",
        ),
        ("import ctypes", "importing ctypes"),
        ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "setrlimit"),
        ("import socket\nsocket.getaddrinfo('localhost', 80)", "socket.getaddrinfo"),
        ("import socket\nsocket.gethostbyname('localhost')", "socket.gethostbyname"),
        ("import socket\nsocket.socket()", "socket.__new__"),
        ("import gc\ngc.get_objects()", "gc.get_objects"),
    ],
)
def test_refused_operations_fail_with_permission_error(source: str, refused: str) -> None:
    result = run_python(source, timeout_s=10)
    assert result.returncode == 1
    assert result.last_error_line.startswith("PermissionError: sandbox:")
    assert refused in result.last_error_line


def test_no_connection_reaches_a_listening_socket() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)"
        result = run_python(source, timeout_s=10)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.last_error_line.startswith("PermissionError: sandbox: socket.")


def test_signals_cannot_reach_the_grading_process() -> None:
    source = (
        "import os, signal\n"
        "for kill in (lambda: os.kill(os.getppid(), signal.SIGKILL),\n"
        "             lambda: os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)):\n"
        "    try:\n"
        "        kill()\n"
        "    except PermissionError as exc:\n"
        "        print(exc)\n"
    )
    result = run_python(source, timeout_s=10)
    assert result.returncode == 0, result.stderr_tail
    assert result.stdout_tail.splitlines() == [
        "sandbox: os.kill is not allowed",
        "sandbox: os.killpg is not allowed",
    ]
    os.kill(os.getpid(), 0)  # still here


@pytest.mark.parametrize(
    "action",
    [
        "open({target!r}, 'w').write('x')",
        "open({target!r}, 'a').write('x')",
        "import pathlib\npathlib.Path({target!r}).write_text('x')",
        "import os\nos.close(os.open({target!r}, os.O_WRONLY | os.O_CREAT))",
        "import os\nos.chdir('/')\nopen({target!r}.lstrip('/'), 'w')",
        "import os\nos.symlink({target!r}, 'link')\nopen('link', 'w')",
        "import os\nos.link({target!r}, 'link')\nopen('link', 'w')",
    ],
)
def test_files_outside_the_working_directory_cannot_be_written(tmp_path: Path, action: str) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("original")
    result = run_python(action.format(target=str(target)), timeout_s=10)
    assert result.last_error_line.startswith("PermissionError: sandbox:")
    assert target.read_text() == "original"


def test_a_relative_path_cannot_climb_out() -> None:
    name = f"perfics-escaped-{uuid.uuid4().hex}.txt"
    result = run_python(f"open('../{name}', 'w')", timeout_s=10)
    assert f"PermissionError: sandbox: writing '../{name}'" in result.stderr_tail
    assert not (Path(tempfile.gettempdir()) / name).exists()


@pytest.mark.parametrize(
    "action",
    [
        "import shutil\nshutil.rmtree({target!r})",
        "import os\nos.remove({target!r} + '/keep.txt')",
        "import os\nos.rename({target!r} + '/keep.txt', 'stolen.txt')",
        "import os\nos.chmod({target!r} + '/keep.txt', 0)",
        "import os\nos.truncate({target!r} + '/keep.txt', 0)",
        "import os\nfd = os.open({target!r}, os.O_RDONLY)\nos.remove('keep.txt', dir_fd=fd)",
    ],
)
def test_files_outside_cannot_be_removed_or_changed(tmp_path: Path, action: str) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    (target / "keep.txt").write_text("kept")
    result = run_python(action.format(target=str(target)), timeout_s=10)
    assert result.last_error_line.startswith("PermissionError: sandbox:")
    assert (target / "keep.txt").read_text() == "kept"
    assert (target / "keep.txt").stat().st_mode & 0o777 != 0


def test_files_inside_the_working_directory_can_be_written_and_removed() -> None:
    source = (
        "import os, pathlib, shutil, tempfile\n"
        "pathlib.Path('d/e').mkdir(parents=True)\n"
        "open('d/e/f.txt', 'w').write('x')\n"
        "os.rename('d/e/f.txt', 'd/g.txt')\n"
        "with tempfile.NamedTemporaryFile('w') as tmp:\n"
        "    tmp.write('y')\n"
        "shutil.rmtree('d')\n"
        "print(sorted(os.listdir('.')))\n"
    )
    result = run_python(source, timeout_s=10)
    assert result.returncode == 0, result.stderr_tail
    assert result.stdout_tail == "['candidate.py', 'stderr', 'stdout']\n"


def marked_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until_gone(marker: str, seconds: float = 3.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize(("child_sleeps", "timeout_s"), [(0, 10.0), (60, 1.0)])
@pytest.mark.slow
def test_no_grandchild_outlives_the_run(
    tmp_path: Path, child_sleeps: int, timeout_s: float
) -> None:
    # The process-group layer on its own, without the audit hook that refuses the spawn.
    marker = f"perfics-grandchild-{uuid.uuid4().hex}"
    spawn = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
        "print('spawned', flush=True)\n"
        f"time.sleep({child_sleeps})\n"
    )
    with open(tmp_path / "out", "w+b") as out, open(tmp_path / "err", "w+b") as err:
        argv = [sys.executable, "-c", spawn]
        returncode, timed_out = _run_in_new_session(argv, str(tmp_path), timeout_s, out, err)
        out.seek(0)
        assert out.read() == b"spawned\n"
    assert timed_out == (child_sleeps > 0)
    assert returncode == (-9 if timed_out else 0)
    assert wait_until_gone(marker) == []


def test_a_refused_spawn_leaves_nothing_behind() -> None:
    marker = f"perfics-grandchild-{uuid.uuid4().hex}"
    source = (
        "import os, subprocess, sys\n"
        "attempts = [\n"
        f"    lambda: subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
        f"{marker!r}]),\n"
        f"    lambda: os.posix_spawn(sys.executable, ['python', '-c', 'pass', {marker!r}], {{}}),\n"
        "    lambda: os.fork(),\n"
        "]\n"
        "for attempt in attempts:\n"
        "    try:\n"
        "        attempt()\n"
        "    except PermissionError:\n"
        "        print('refused')\n"
    )
    result = run_python(source, timeout_s=10)
    assert result.stdout_tail == "refused\n" * 3
    assert wait_until_gone(marker, seconds=0.5) == []
