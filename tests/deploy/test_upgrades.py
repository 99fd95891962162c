"""A rolling upgrade shares the database between two versions: the newer one migrates the
schema at start; an older one that starts afterwards (an old replica restarting mid-rollout,
or a rollback) must stop with exit 2 and the reason, not a traceback (docs/deploy.md)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.store import connect
from tests.conftest import ROOT


@pytest.mark.slow
def test_a_schema_from_a_newer_version_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'perfics.db'}"
    connect.upgrade(url)
    with sqlite3.connect(tmp_path / "perfics.db") as db:
        db.execute("UPDATE perfics_schema_version SET version_num = '9999'")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "proxy.cli", "serve", "--policy", "policies/default.yaml"),
            *("--port", "0", "--database", url),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "'9999'" in result.stderr
    assert "a newer perfics upgraded its schema" in result.stderr
