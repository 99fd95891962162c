"""Service settings: command-line flags over ``PERFICS_*`` environment variables over defaults.

PERFICS_POLICY       policy file          (policies/default.yaml)
PERFICS_HOST         bind address         (127.0.0.1: nothing is exposed unless asked)
PERFICS_PORT         port                 (8000)
PERFICS_LOG_LEVEL    debug|info|warning   (info)
PERFICS_QUEUE_SIZE   requests that may wait per embedded model before 429 (16)
PERFICS_ADMIN_KEY    key for /admin/* from other hosts (admin is loopback-only without it)
PERFICS_API_KEY      when set, clients must send it as a bearer token
PERFICS_KEEPALIVE_S  seconds between SSE comments during hidden rounds (5)
PERFICS_DATABASE_URL the key and ledger store (over the policy's server.database; default
                     sqlite:///.perfics/perfics.db, relative to the working directory)
PERFICS_WORKERS      processes serving one port (1)
PERFICS_METRICS      on|off: Prometheus metrics at /metrics and the dashboard's live figures (on)
PERFICS_METRICS_KEY  a key that reads /metrics only (besides the admin rule)

The other paths the process writes are read where they are used: PERFICS_CACHE_DIR
(``proxy.backends.bundled``: the assembled Gemma GGUF) and TMPDIR (``proxy.multiproc``:
Prometheus' multiprocess directory with several workers). The container image puts all three
in its volumes (docs/deploy.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    policy: str = "policies/default.yaml"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    queue_size: int | None = None
    admin_key: str | None = None
    api_key: str | None = None
    keepalive_s: float = 5.0
    database_url: str | None = None
    workers: int = 1
    metrics: bool = True
    metrics_key: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.keepalive_s <= 10:
            # docs/architecture.md, "One request": keep-alive comments at least every 10 s.
            raise ValueError("keepalive_s must be above 0 and at most 10")
        if self.queue_size is not None and self.queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``environ`` (default ``os.environ``), then non-None ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(f"PERFICS_{field.name.upper()}")
            if raw is not None and raw != "":
                values[field.name] = _convert(field.name, raw, field.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"0", "false", "off", "no"})


def _convert(name: str, raw: str, kind: object) -> Any:
    """``raw`` as the field's type; annotations are strings here (``int | None``)."""
    base = str(kind).split("|")[0].strip()
    if base == "bool":
        lowered = raw.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError(f"PERFICS_{name.upper()}={raw!r} is not on/off")
    try:
        if base == "int":
            return int(raw)
        if base == "float":
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"PERFICS_{name.upper()}={raw!r} is not a number") from exc
    return raw
