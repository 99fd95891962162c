"""Write calibrated figures into a policy file, keeping every other byte as it was.

ruamel.yaml's round-trip parser locates each key and value (line and column); the edit then
replaces only those spans of the original text, so comments, blank lines, alignment, quoting
and hand-wrapped flow lists elsewhere survive untouched (a full re-dump would re-flow them).
Only these change:

- ``models[i].quality.<task>`` becomes the measured ``[Q0, ..., QR]`` for every task with a
  complete measurement, followed by ``# calibrated DATE: n=N, suites=..., judge=ID,
  machine=...; r1 +0.50 [-0.20, 1.20], ...`` (the sample size, what graded it, where it ran,
  and each round count's paired gain over the draft with its 95 % interval). An
  existing entry is rewritten in place (its alignment kept); a new one is added after the
  last entry; a flow-style ``quality: {...}`` is rewritten as a block so each list has a line
  for its comment. Tasks without questions keep their list (or ``default``).
- with ``hardware``, ``models[i].hardware.prefill_tokens_per_s`` / ``decode_tokens_per_s`` take
  the measured speeds, for models that already price themselves by ``hardware``; the line gets
  ``# measured DATE: N draft calls`` unless it already carries a comment.

``write_policy`` validates the result with the policy loader first and refuses to write a file
the proxy would reject.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from .scores import Calibration, gain_text
from .throughput import Throughput

_NUMBER = re.compile(r"[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class Edited:
    text: str
    changes: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Edit:
    """Replace lines ``start`` .. ``end`` - 1 with ``lines`` (``start == end``: insert)."""

    start: int
    end: int
    lines: tuple[str, ...]


def apply_calibration(
    text: str,
    calibration: Calibration,
    *,
    date: str,
    hardware: bool,
    machine: str = "",
    significant_only: bool = False,
) -> Edited:
    """The policy ``text`` with ``calibration``'s figures written in; ``machine`` describes
    where they were measured (it goes into each list's comment). ``significant_only``: see
    ``Calibration.quality_lists``; the comment still gives every measured gain."""
    doc = YAML().load(text)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    entries = {str(entry.get("id")): entry for entry in doc.get("models") or ()}
    edits: list[_Edit] = []
    changes: list[str] = []
    notes: list[str] = []
    for model, tasks in calibration.quality_lists(significant_only=significant_only).items():
        entry = entries.get(model)
        if entry is None:
            notes.append(f"{model}: not in the policy file; nothing written")
            continue
        new = {
            task: f"{_flow(values)}  # {_comment(date, counts, calibration, model, task, machine)}"
            for task, (values, counts) in tasks.items()
        }
        edits += _quality_edits(lines, entry, new)
        for task, (values, _) in tasks.items():
            old = entry.get("quality", {}).get(task)
            changes.append(
                f"{model}.quality.{task}: {_flow(old) if old else '(default)'} -> {values}"
            )
    if hardware:
        for model, speed in calibration.throughput.items():
            entry = entries.get(model)
            edits += _speed_edits(lines, entry, model, speed, date, changes, notes)
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        lines[edit.start : edit.end] = edit.lines
    return Edited("".join(lines), tuple(changes), tuple(notes))


def calibrated_lists(text: str) -> frozenset[tuple[str, str]]:
    """``(model, quality key)`` pairs whose list carries a ``# calibrated`` comment."""
    found: set[tuple[str, str]] = set()
    for entry in YAML().load(text).get("models") or ():
        quality = entry.get("quality") if isinstance(entry, CommentedMap) else None
        if not isinstance(quality, CommentedMap):
            continue
        for key in quality:
            if _eol_comment(quality, key).lstrip().startswith("# calibrated "):
                found.add((str(entry.get("id")), str(key)))
    return frozenset(found)


def diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), name, f"{name} (calibrated)"
    )
    return "".join(lines)


def check_policy_text(text: str, name: str) -> None:
    """Raise ``routing.errors.PolicyError`` (every problem, naming ``name``) when ``text`` is
    not a policy the proxy would load."""
    from routing.policy_loader import parse_policy

    parse_policy(text, name)


def write_policy(path: str | Path, text: str) -> None:
    """Validate ``text`` and write it to ``path`` atomically; raises ``PolicyError`` and
    leaves ``path`` untouched when the policy loader rejects it."""
    path = Path(path)
    check_policy_text(text, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The file mode to write ``path`` with: its current one, else the umask's default."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _quality_edits(lines: list[str], entry: CommentedMap, new: Mapping[str, str]) -> list[_Edit]:
    quality = entry.get("quality")
    entry_col = entry.lc.key(next(iter(entry)))[1]
    if isinstance(quality, CommentedMap) and quality and not quality.fa.flow_style():
        edits: list[_Edit] = []
        for task, value in new.items():
            if task in quality:
                line, col = quality.lc.value(task)
                end = _value_end(lines, line, quality.lc.key(task)[1])
                edits.append(_Edit(line, end, (lines[line][:col] + value + "\n",)))
        added = [task for task in new if task not in quality]
        if added:
            last = list(quality)[-1]
            key_col = quality.lc.key(last)[1]
            value_cols = {quality.lc.value(k)[1] for k in quality}
            aligned = value_cols.pop() if len(value_cols) == 1 else 0
            end = _value_end(lines, quality.lc.key(last)[0], key_col)
            rows = tuple(
                " " * key_col + f"{task}:".ljust(aligned - key_col - 1) + f" {new[task]}\n"
                for task in added
            )
            edits.append(_Edit(end, end, rows))
        return edits
    # No quality yet, or a flow mapping: write the whole mapping as a block.
    merged = {str(k): _flow(v) for k, v in (quality or {}).items()}
    merged.update(new)
    indent = " " * entry_col
    rows = (
        f"{indent}quality:{_eol_comment(entry, 'quality')}\n",
        *(f"{indent}  {task}: {value}\n" for task, value in merged.items()),
    )
    if "quality" in entry:
        line = entry.lc.key("quality")[0]
        return [_Edit(line, _value_end(lines, line, entry_col), rows)]
    last = list(entry)[-1]
    end = _value_end(lines, entry.lc.key(last)[0], entry_col)
    return [_Edit(end, end, rows)]


def _speed_edits(
    lines: list[str],
    entry: CommentedMap | None,
    model: str,
    speed: Throughput,
    date: str,
    changes: list[str],
    notes: list[str],
) -> list[_Edit]:
    if entry is None:
        return []
    block = entry.get("hardware")
    if not isinstance(block, CommentedMap):
        notes.append(f"{model}: priced per token, no hardware block; speeds not written")
        return []
    spans: dict[int, list[tuple[int, int, str]]] = {}
    for field, value in (
        ("prefill_tokens_per_s", speed.prefill_tokens_per_s),
        ("decode_tokens_per_s", speed.decode_tokens_per_s),
    ):
        if value is None or field not in block:
            notes.append(f"{model}: {field} not measured or not present; left as it was")
            continue
        line, col = block.lc.value(field)
        found = _NUMBER.match(lines[line], col)
        if found is None:
            notes.append(f"{model}: could not locate hardware.{field}; left as it was")
            continue
        spans.setdefault(line, []).append((col, found.end(), str(round(value))))
        changes.append(f"{model}.hardware.{field}: {block[field]} -> {round(value)}")
    edits: list[_Edit] = []
    for line, found_spans in spans.items():
        text = lines[line]
        for start, end, number in sorted(found_spans, reverse=True):
            text = text[:start] + number + text[end:]
        if line == max(spans) and "#" not in text:
            text = f"{text.rstrip()}  # measured {date}: {speed.calls} draft calls\n"
        edits.append(_Edit(line, line + 1, (text,)))
    return edits


def _value_end(lines: list[str], start: int, key_col: int) -> int:
    """The line after the value of the key at (``start``, ``key_col``): the value runs on
    through lines indented deeper than the key; trailing blank and comment-only lines are left
    outside, since they introduce what follows."""
    end = start + 1
    while end < len(lines):
        stripped = lines[end].strip()
        indent = len(lines[end]) - len(lines[end].lstrip(" "))
        if stripped and not stripped.startswith("#") and indent <= key_col:
            break
        end += 1
    while end > start + 1 and (
        not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")
    ):
        end -= 1
    return end


def _eol_comment(mapping: CommentedMap, key: str) -> str:
    """The end-of-line comment after ``key``'s value, as ``"  # text"``, or ``""``."""
    slots = mapping.ca.items.get(key)
    token = slots[2] if slots and len(slots) > 2 else None
    if token is None:
        return ""
    first = str(token.value).split("\n", 1)[0].strip()
    return f"  {first}" if first.startswith("#") else ""


def _flow(values: Any) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def _comment(
    date: str, counts: list[int], calibration: Calibration, model: str, task: str, machine: str
) -> str:
    n = str(counts[0]) if len(set(counts)) == 1 else ",".join(map(str, counts))
    parts = [f"n={n}"]
    suites = calibration.task_suites.get(task) or calibration.suites
    if suites:
        parts.append(f"suites={'+'.join(suites)}")
    if calibration.judge:
        parts.append(f"judge={calibration.judge}")
    if machine:
        parts.append(f"machine={machine}")
    gains = []
    for r in range(1, calibration.rounds + 1):
        gain = calibration.gain(task, model, r)
        if gain is not None:
            shown = "" if gain.distinguishable else ", not shown"
            gains.append(f"r{r} {gain_text(gain)}{shown}")
    text = f"calibrated {date}: {', '.join(parts)}"
    return f"{text}; {', '.join(gains)}" if gains else text
