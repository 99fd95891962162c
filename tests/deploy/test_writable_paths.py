"""Paths the process writes, when they cannot be written: a key store stops ``perfics serve``
at start with exit 2 and a message naming the file and the setting, never a traceback (the
first case is the crash the container image had: the default ``sqlite:///.perfics/perfics.db``
under a working directory its user cannot write); a Gemma cache directory fails that model's
start naming ``PERFICS_CACHE_DIR``."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.backends.bundled import BundledModelMissing, resolve_model_path
from tests.conftest import ROOT

POLICY = ROOT / "policies" / "default.yaml"
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _without_root_file_access() -> None:
    """``preexec_fn``: a child of root loses the capabilities that let root write anywhere, so
    file modes bind it as they bind the image's non-root user (other users: nothing to do)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _serve(cwd: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PERFICS_DATABASE_URL"}
    if database_url is not None:
        env["PERFICS_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "serve", "--policy", str(POLICY), "--port", "0"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=60,
        preexec_fn=_without_root_file_access,
    )


def _read_only_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    return directory


@pytest.mark.parametrize(
    "case",
    [
        "default store in a read-only working directory",
        "directory not writable",
        "a file in the way",
    ],
)
@pytest.mark.slow
def test_an_unwritable_store_path_is_a_clear_start_error(tmp_path: Path, case: str) -> None:
    cwd, url = tmp_path, None
    if case == "default store in a read-only working directory":
        cwd = _read_only_directory(tmp_path)
        expected = cwd / ".perfics" / "perfics.db"
    elif case == "directory not writable":
        expected = _read_only_directory(tmp_path) / "perfics.db"
        url = f"sqlite:///{expected}"
    else:
        (tmp_path / "file").write_text("not a directory")
        expected = tmp_path / "file" / "store" / "perfics.db"
        url = f"sqlite:///{expected}"
    result = _serve(cwd, url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot write the SQLite store {expected}" in result.stderr
    assert "set PERFICS_DATABASE_URL" in result.stderr


def test_an_unwritable_model_cache_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    cache = tmp_path / "file" / "cache"
    with pytest.raises(BundledModelMissing, match=f"in {cache}: .*set PERFICS_CACHE_DIR"):
        resolve_model_path("bundled:gemma3-270m", {"PERFICS_CACHE_DIR": str(cache)})
