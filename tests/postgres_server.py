"""A real PostgreSQL server for the tests: ``initdb`` into a temporary directory and
``pg_ctl start`` on a free port of 127.0.0.1 (Debian's server packages: ``pg_config --bindir``
names where they are). As root, the server runs as the ``postgres`` user, since PostgreSQL
refuses to run as root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port


def bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are, or None when the server packages are missing (the
    caller skips). Under ``CI=true`` a missing server fails the calling test instead: ``make
    test`` installs the packages, and a skip there would hide that PostgreSQL was never tested."""
    pg_config = shutil.which("pg_config")
    found = None
    if pg_config is not None:
        listed = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        found = Path(listed.stdout.strip())
    if found is not None and (found / "initdb").exists() and (found / "pg_ctl").exists():
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true and PostgreSQL's server is missing (`make test` installs it)")
    return None


class PostgresServer:
    def __init__(self, bin_dir: Path) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="perfics-pg-"))
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._bin = bin_dir
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self._bin / program), *args],
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [
                    *self._as,
                    str(self._bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                cwd=self.root,
            )
        shutil.rmtree(self.root, ignore_errors=True)
