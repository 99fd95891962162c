"""The program ``sandbox.run_python`` starts: it fences itself in, then runs the candidate.

Invoked as ``python -S -P -B sandbox_child.py ROOT CANDIDATE MEMORY_MB CPU_S FILE_MB FILES``,
with ``ROOT`` the sandbox's temporary directory (also the working directory) and ``CANDIDATE``
the source file to run. Before the candidate's first line it

1. lowers its own resource limits, soft and hard (address space, CPU seconds, file size, open
   files, no core dumps), so that the candidate cannot raise them again;
2. compiles the candidate (a syntax error ends the run here, with its traceback on stderr);
3. replaces ``_posixsubprocess.fork_exec``, the one way to start a process that raises no audit
   event, with a function that refuses;
4. installs an audit hook (``sys.addaudithook``; hooks cannot be removed) that refuses, by
   raising ``PermissionError``: starting processes (fork, exec, spawn, system, posix_spawn,
   ``subprocess.Popen``, pty), sending signals, every ``socket`` operation (creating one,
   connecting, binding, resolving names), ``ctypes``, importing ``ctypes``, ``_posixsubprocess``
   again or the sub-interpreter and test-internal modules, raising resource limits, walking the
   garbage collector's object graph, changing the hook's own code or defaults, and opening,
   creating, renaming, removing or changing any file outside ``ROOT`` (reading is allowed);
5. runs the candidate as a fresh ``__main__`` module.

The hook resolves paths lexically against the working directory (``..`` and ``.`` removed),
and refuses creating links of either kind so that no link inside ``ROOT`` can point out of it.
It reaches everything it uses through default arguments, which the candidate cannot rebind
without an audited ``__defaults__`` write, rather than through this module's globals, which the
candidate can reach through its caller's frame.
"""

from __future__ import annotations

import os
import resource
import sys
import types
from collections.abc import Callable
from typing import Any, NoReturn

_REFUSED_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.kill",
        "os.killpg",
        "os.link",
        "os.symlink",
        "signal.pthread_kill",
        "subprocess.Popen",
        "resource.setrlimit",
        "resource.prlimit",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys._current_frames",
    }
)
_REFUSED_PREFIXES = ("socket.", "ctypes.", "pty.")
_REFUSED_IMPORTS = frozenset(
    {
        "ctypes",
        "_ctypes",
        "_posixsubprocess",
        "_xxsubinterpreters",
        "_xxinterpchannels",
        "_testcapi",
        "_testinternalcapi",
    }
)
# Event name, then for each path argument: (its index, the index of its dir_fd or -1).
_PATH_EVENTS = (
    ("os.remove", ((0, 1),)),
    ("os.rmdir", ((0, 1),)),
    ("os.mkdir", ((0, 2),)),
    ("os.chmod", ((0, 2),)),
    ("os.chown", ((0, 3),)),
    ("os.utime", ((0, 3),)),
    ("os.truncate", ((0, -1),)),
    ("os.chflags", ((0, -1),)),
    ("os.lchflags", ((0, -1),)),
    ("os.setxattr", ((0, -1),)),
    ("os.removexattr", ((0, -1),)),
    ("os.rename", ((0, 2), (1, 3))),
    ("shutil.rmtree", ((0, 1),)),
)
_PATH_EVENT_NAMES = frozenset(name for name, _ in _PATH_EVENTS)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_MB = 1024 * 1024

Hook = Callable[[str, tuple[Any, ...]], None]


def main(argv: list[str]) -> None:
    root, candidate, memory_mb, cpu_s, file_mb, files = argv
    _limit(resource.RLIMIT_AS, int(memory_mb) * _MB)
    _limit(resource.RLIMIT_CPU, int(cpu_s), int(cpu_s) + 1)
    _limit(resource.RLIMIT_FSIZE, int(file_mb) * _MB)
    _limit(resource.RLIMIT_NOFILE, int(files))
    _limit(resource.RLIMIT_CORE, 0)
    with open(candidate, encoding="utf-8") as source:
        code = compile(source.read(), candidate, "exec")
    _disarm_fork_exec()
    sys.addaudithook(_audit_hook(os.path.realpath(root)))
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    sys.argv = [candidate]
    exec(code, module.__dict__)


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    """Set a limit, never above the hard limit already in force (which only root may raise)."""
    hard = soft if hard is None else hard
    ceiling = resource.getrlimit(which)[1]
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(which, (soft, hard))


def _refuse_process(*_args: object) -> NoReturn:
    raise PermissionError("sandbox: starting a process is not allowed")


def _disarm_fork_exec() -> None:
    import _posixsubprocess

    vars(_posixsubprocess)["fork_exec"] = _refuse_process


def _inside(
    path: Any,
    dir_fd: Any,
    root: str,
    _isinstance: Any = isinstance,
    _int: type = int,
    _text: tuple[type, ...] = (str, bytes),
    _fspath: Any = os.fspath,
    _readlink: Any = os.readlink,
    _getcwd: Any = os.getcwd,
) -> bool:
    """Whether ``path`` (relative to ``dir_fd`` when that is an open directory, else to the
    working directory; an ``int`` path is an open descriptor) names something inside ``root``.
    Builtins arrive as defaults for the reason the module docstring gives."""
    if _isinstance(path, _int):
        path, dir_fd = _readlink(f"/proc/self/fd/{path}"), None
    if not _isinstance(path, _text):
        path = _fspath(path)
    if not _isinstance(path, _text[0]):
        path = path.decode("utf-8", "surrogateescape")
    if not path.startswith("/"):
        base = _getcwd() if dir_fd is None or dir_fd < 0 else _readlink(f"/proc/self/fd/{dir_fd}")
        path = base + "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    resolved = "/" + "/".join(parts)
    return resolved == root or resolved.startswith(root + "/")


def _audit_hook(root: str) -> Hook:
    def hook(
        event: str,
        args: tuple[Any, ...],
        _root: str = root,
        _refused: frozenset[str] = _REFUSED_EVENTS,
        _prefixes: tuple[str, ...] = _REFUSED_PREFIXES,
        _imports: frozenset[str] = _REFUSED_IMPORTS,
        _path_names: frozenset[str] = _PATH_EVENT_NAMES,
        _path_events: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = _PATH_EVENTS,
        _write_flags: int = _WRITE_FLAGS,
        _inside: Callable[[Any, Any, str], bool] = _inside,
        _isinstance: Any = isinstance,
        _int: type = int,
        _text: tuple[type, ...] = (str, bytes),
        _refusal: type[Exception] = PermissionError,
        _protected: tuple[object, ...] = (),
    ) -> None:
        if event in _refused or event.startswith(_prefixes):
            raise _refusal(f"sandbox: {event} is not allowed")
        if event == "import" and args[0] in _imports:
            raise _refusal(f"sandbox: importing {args[0]} is not allowed")
        if event in ("object.__setattr__", "object.__delattr__") and args[0] in _protected:
            raise _refusal("sandbox: changing the sandbox's own functions is not allowed")
        if event == "open":
            path, mode, flags = args
            if _isinstance(path, _int) or not (flags or 0) & _write_flags:
                return
            # os.open (no mode) may be relative to an unseen dir_fd: only absolute paths pass.
            absolute = _isinstance(path, _text) and path[:1] in ("/", b"/")
            if (mode is None and not absolute) or not _inside(path, None, _root):
                raise _refusal(f"sandbox: writing {path!r} is not allowed")
        elif event in _path_names:
            for name, places in _path_events:
                if name == event:
                    for path_index, fd_index in places:
                        fd = None if fd_index < 0 else args[fd_index]
                        if not _inside(args[path_index], fd, _root):
                            raise _refusal(f"sandbox: {event} {args[path_index]!r} not allowed")

    # The hook guards its own defaults (and _inside's) against replacement: it is added to
    # them here, before it is installed, since a function cannot name itself in its signature.
    defaults = hook.__defaults__ or ()
    hook.__defaults__ = (*defaults[:-1], (hook, _inside))
    return hook


if __name__ == "__main__":
    main(sys.argv[1:])
