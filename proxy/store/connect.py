"""Opening a store and keeping its schema current with Alembic (version table
``perfics_schema_version``). ``upgrade`` runs at ``perfics serve`` start and from the command
line; on PostgreSQL an advisory lock lets several proxies start at once.

    sqlite:///.perfics/perfics.db     the default, relative to the working directory
    sqlite:////var/lib/perfics/x.db   an absolute path
    postgresql://user:pass@host:5432/perfics

A store that cannot be reached or written is ``StoreUnavailable`` whose message names the
database (and, for SQLite, the settings that choose it); ``perfics serve`` prints it and exits 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from proxy.store.base import Store, StoreUnavailable, shown_url

DEFAULT_URL = "sqlite:///.perfics/perfics.db"
_SETTING = "PERFICS_DATABASE_URL (or --database, or the policy's server.database)"
_MIGRATION_LOCK = 0x70657266  # "perf"


def database_url(
    given: str | None, policy_value: str | None, environ: Mapping[str, str] = os.environ
) -> str:
    """The store to use: a URL given (a flag, ``Settings.database_url``), else
    ``PERFICS_DATABASE_URL``, else the policy's ``server.database``, else ``DEFAULT_URL``."""
    return given or environ.get("PERFICS_DATABASE_URL") or policy_value or DEFAULT_URL


def _kind(url: str) -> str:
    if url.startswith("sqlite://"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise StoreUnavailable(
        f"unsupported database URL {shown_url(url)!r}: use sqlite:///PATH or postgresql://..."
    )


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///") or ":memory:"


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; ``StoreUnavailable`` if unreachable."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    kind = _kind(url)
    if kind == "sqlite":
        path = sqlite_path(url)
        if path != ":memory:":
            _writable_directory(Path(path))
        engine_url = f"sqlite:///{path}"
    else:
        engine_url = "postgresql+psycopg://" + url.split("://", 1)[1]
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    try:
        engine = create_engine(engine_url)
        with engine.begin() as connection:
            if kind == "postgresql":
                connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        engine.dispose()
    except CommandError as exc:
        # The version table names a revision this code does not have: a newer perfics
        # upgraded the schema (a rollback, or an old replica restarting mid-rollout).
        raise StoreUnavailable(
            f"cannot use the database {shown_url(url)}: {exc}; a newer perfics upgraded its "
            "schema, and this version cannot run on it"
        ) from exc
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        unwritable = kind == "sqlite" and ("unable to open" in reason or "readonly" in reason)
        hint = f"; set {_SETTING} to a writable path" if unwritable else ""
        raise StoreUnavailable(f"cannot use the database {shown_url(url)}: {reason}{hint}") from exc


def _writable_directory(path: Path) -> None:
    """Make the directory of the SQLite file ``path``; ``StoreUnavailable`` naming the file and
    the setting when it cannot be made or written into (SQLite creates the file and its
    ``-wal`` and ``-shm`` beside it)."""
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = str(exc)
    else:
        # access() answers for the caller's uid and for a read-only filesystem (EROFS).
        if os.access(directory, os.W_OK | os.X_OK):
            return
        reason = f"the directory {directory.absolute()} is not writable"
    raise StoreUnavailable(
        f"cannot write the SQLite store {path.absolute()}: {reason}; "
        f"set {_SETTING} to a writable path"
    )


async def open_store(url: str) -> Store:
    """A connected store for ``url`` (its schema must be current: ``upgrade`` first)."""
    if _kind(url) == "sqlite":
        from proxy.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    from proxy.store.postgres import PostgresStore

    return await PostgresStore.connect(url)
