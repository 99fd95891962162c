"""The run directory: every answer and grade of a calibration, one small JSON file each.

    <run dir>/answers/<model>--<question>--<hash>.json   a draft and its rounds
    <run dir>/samples/<model>--<question>--<hash>.json   the samples after a draft, and
                                                          the selections made among them
    <run dir>/grades/<hash>.json                          one judged answer text

Files are written atomically (a temporary file in the same directory, then ``os.replace``), so
an interrupted run leaves only whole items behind and ``--resume`` continues from them. The
default directory is named by a fingerprint of everything that decides the answers and grades
(the models' serving entries, the refinement prompts, the tasks' answer lengths, the
questions, the judge, the seed); a change to any of them starts a fresh directory. Quality and
price figures are not part of it, so a policy rewritten by a calibration keeps its cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path(".perfics") / "calibrate"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def fingerprint(value: Any) -> str:
    """A short stable hash of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class RunStore:
    """Answers and grades of one calibration run, cached on disk under ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load_answer(self, model: str, question_id: str) -> dict[str, Any] | None:
        return _read(self._item_path("answers", model, question_id))

    def save_answer(self, model: str, question_id: str, record: Mapping[str, Any]) -> None:
        _write_atomic(self._item_path("answers", model, question_id), record)

    def load_samples(self, model: str, question_id: str) -> dict[str, Any] | None:
        return _read(self._item_path("samples", model, question_id))

    def save_samples(self, model: str, question_id: str, record: Mapping[str, Any]) -> None:
        _write_atomic(self._item_path("samples", model, question_id), record)

    def load_grade(self, key: str) -> dict[str, Any] | None:
        return _read(self.path / "grades" / f"{key}.json")

    def save_grade(self, key: str, record: Mapping[str, Any]) -> None:
        _write_atomic(self.path / "grades" / f"{key}.json", record)

    def _item_path(self, kind: str, model: str, question_id: str) -> Path:
        name = f"{_slug(model)}--{_slug(question_id)}--{fingerprint([model, question_id])[:8]}"
        return self.path / kind / f"{name}.json"


def _slug(text: str) -> str:
    return _UNSAFE.sub("_", text)[:40] or "_"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_atomic(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
