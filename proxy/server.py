"""``perfics serve``: run the app under uvicorn (uvloop when installed, httptools).

Connection limits come from the policy's ``server`` section as it is at start
(``proxy.http_protocol``). uvicorn never rewrites the client address from ``X-Forwarded-For``
or ``Forwarded`` here (``proxy_headers=False``): the admin routes decide "loopback" by the
socket peer, which a remote client cannot forge with a header.
"""

from __future__ import annotations

import gc
import importlib.util
import sys

import uvicorn

from proxy.app import create_app
from proxy.http_protocol import protocol_options
from proxy.logs import configure_logging
from proxy.settings import Settings
from routing.errors import PolicyError
from routing.policy_loader import load_policy


def serve(
    *,
    policy: str | None = None,
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    queue_size: int | None = None,
) -> int:
    """Serve until interrupted. Flags given here win over ``PERFICS_*`` variables."""
    settings = Settings.from_env(
        policy=policy, host=host, port=port, log_level=log_level, queue_size=queue_size
    )
    configure_logging(settings.log_level)
    try:
        limits = load_policy(settings.policy).server
    except PolicyError as exc:
        print(exc, file=sys.stderr)
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
        **protocol_options(limits.header_timeout_s, limits.max_connections),
    )
    # Everything imported and built so far lives as long as the process; frozen, the cyclic
    # collector's full passes skip it instead of pausing the loop for milliseconds (visible
    # in the benchmark's p99, benchmarks/README.md).
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run()
    return 0
