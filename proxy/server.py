"""``perfics serve``: run the app under uvicorn (uvloop when installed, httptools), in one
process or, with ``workers`` above 1, in that many processes sharing one listening socket.

Connection limits come from the policy's ``server`` section as it is at start
(``proxy.http_protocol``). uvicorn never rewrites the client address from ``X-Forwarded-For``
or ``Forwarded`` here (``proxy_headers=False``): the admin routes decide "loopback" by the
socket peer, which a remote client cannot forge with a header.

The key and ledger store's schema is brought up to date before anything listens, so an
unreachable or unusable database stops the start with its reason (exit status 2).

Workers: the parent binds the socket, forks the workers and supervises them. A worker that
dies is started again (at most once a second); SIGTERM or SIGINT stops them all; SIGHUP is
passed on, so each worker re-reads the policy. Each worker builds its own app, its own
backends (an embedded model is loaded once per worker) and its own store connections; keys,
budgets and the ledger are shared through the store (docs/scaling.md). Prometheus metrics run
in the client's multiprocess mode (``proxy.multiproc``, set up by the command line before the
client is first imported); the parent drops a dead worker's live gauges.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import signal
import sys
import time

import uvicorn

from proxy.app import create_app
from proxy.http_protocol import protocol_options
from proxy.logs import configure_logging
from proxy.ops.metrics import mark_process_dead
from proxy.settings import Settings
from proxy.store import connect
from proxy.store.base import StoreUnavailable
from routing.errors import PolicyError
from routing.policy_loader import load_policy


def serve(
    *,
    policy: str | None = None,
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    queue_size: int | None = None,
    database_url: str | None = None,
    workers: int | None = None,
) -> int:
    """Serve until interrupted. Flags given here win over ``PERFICS_*`` variables."""
    settings = Settings.from_env(
        policy=policy,
        host=host,
        port=port,
        log_level=log_level,
        queue_size=queue_size,
        database_url=database_url,
        workers=workers,
    )
    configure_logging(settings.log_level)
    try:
        server = load_policy(settings.policy).server
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        connect.upgrade(connect.database_url(settings.database_url, server.database))
    except StoreUnavailable as exc:
        print(f"perfics: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        **protocol_options(server.header_timeout_s, server.max_connections),
    )
    if settings.workers > 1:
        return _supervise(config, settings.workers)
    _freeze()
    uvicorn.Server(config).run()
    return 0


def _freeze() -> None:
    # Everything imported and built so far lives as long as the process; frozen, the cyclic
    # collector's full passes skip it instead of pausing the loop for milliseconds (visible
    # in the benchmark's p99, benchmarks/README.md).
    gc.collect()
    gc.freeze()


def _supervise(config: uvicorn.Config, workers: int) -> int:
    listener = config.bind_socket()
    children: dict[int, float] = {}
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            _freeze()
            try:
                uvicorn.Server(config).run(sockets=[listener])
            finally:
                os._exit(0)
        children[pid] = time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _signal(pid, signal.SIGTERM)

    def reload(signum: int, frame: object) -> None:
        for pid in list(children):
            _signal(pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    for _ in range(workers):
        spawn()
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        started = children.pop(pid, None)
        mark_process_dead(pid)
        if started is None or stopping:
            continue
        print(f"perfics: worker {pid} exited; starting another", file=sys.stderr)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        spawn()
    listener.close()
    return 0


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
