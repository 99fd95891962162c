"""``perfics serve``: run the app under uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import gc
import importlib.util

import uvicorn

from proxy.app import create_app
from proxy.logs import configure_logging
from proxy.settings import Settings


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
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    # Everything imported and built so far lives as long as the process; frozen, the cyclic
    # collector's full passes skip it instead of pausing the loop for milliseconds (visible
    # in the benchmark's p99, benchmarks/README.md).
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run()
    return 0
