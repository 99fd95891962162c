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
  for its comment. Tasks without questions keep their list (or ``default``). A task whose
  selection techniques were measured takes the mapping form (``refine``, ``best_of``,
  ``vote``), each figure with its own comment: ``quality_entries`` decides what is written.
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

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from .policy_text import eol_comment, render, value_end
from .quality_entries import About, Entry, task_entry
from .scores import Calibration
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
    ``Calibration.quality_lists`` (and, for techniques, the module docstring); the comments
    still give every measured gain."""
    doc = YAML().load(text)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    entries = {str(entry.get("id")): entry for entry in doc.get("models") or ()}
    edits: list[_Edit] = []
    changes: list[str] = []
    notes: list[str] = []
    lists = calibration.quality_lists(significant_only=significant_only)
    tables = calibration.technique_tables()
    about = About(date, machine, significant_only)
    for model in dict.fromkeys([*lists, *tables]):
        entry = entries.get(model)
        if entry is None:
            notes.append(f"{model}: not in the policy file; nothing written")
            continue
        quality = entry.get("quality")
        new: dict[str, Entry] = {}
        for task in dict.fromkeys([*lists.get(model, {}), *tables.get(model, {})]):
            found = task_entry(
                lines,
                quality if isinstance(quality, CommentedMap) else None,
                model,
                task,
                lists.get(model, {}).get(task),
                tables.get(model, {}).get(task, {}),
                calibration,
                about,
            )
            if found is None:
                notes.append(f"{model}.{task}: no draft measured; nothing written")
                continue
            new[task] = found
            changes += [f"{model}.quality.{task}{change}" for change in found.changes]
        edits += _quality_edits(lines, entry, new)
    if hardware:
        for model, speed in calibration.throughput.items():
            entry = entries.get(model)
            edits += _speed_edits(lines, entry, model, speed, date, changes, notes)
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        lines[edit.start : edit.end] = edit.lines
    return Edited("".join(lines), tuple(changes), tuple(notes))


def calibrated_lists(text: str) -> frozenset[tuple[str, str]]:
    """``(model, quality key)`` pairs whose figures carry a ``# calibrated`` comment: a task
    (or ``default``) whose list, or whose mapping's ``refine`` list, carries one, and
    ``task.best_of`` / ``task.vote`` for a technique table that does."""
    found: set[tuple[str, str]] = set()
    for entry in YAML().load(text).get("models") or ():
        quality = entry.get("quality") if isinstance(entry, CommentedMap) else None
        if not isinstance(quality, CommentedMap):
            continue
        model = str(entry.get("id"))
        for key, value in quality.items():
            if isinstance(value, CommentedMap):
                for sub in value:
                    if _marked(value, sub):
                        found.add((model, str(key) if sub == "refine" else f"{key}.{sub}"))
            elif _marked(quality, key):
                found.add((model, str(key)))
    return frozenset(found)


def _marked(mapping: CommentedMap, key: str) -> bool:
    return eol_comment(mapping, key).lstrip().startswith("# calibrated ")


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


def _quality_edits(lines: list[str], entry: CommentedMap, new: Mapping[str, Entry]) -> list[_Edit]:
    quality = entry.get("quality")
    entry_col = entry.lc.key(next(iter(entry)))[1]
    if isinstance(quality, CommentedMap) and quality and not quality.fa.flow_style():
        edits: list[_Edit] = []
        for task, value in new.items():
            if task not in quality:
                continue
            key_line, key_col = quality.lc.key(task)
            end = value_end(lines, key_line, key_col)
            if value.inline is not None:
                line, col = quality.lc.value(task)
                edits.append(_Edit(line, end, (lines[line][:col] + value.inline + "\n",)))
                continue
            old = quality[task]
            if isinstance(old, CommentedMap) and old and not old.fa.flow_style():
                head = lines[key_line].rstrip("\n")
                sub_col = old.lc.key(next(iter(old)))[1]
            else:
                head = lines[key_line][:key_col] + f"{task}:"
                if isinstance(old, CommentedMap):
                    head += eol_comment(quality, task)
                sub_col = key_col + 2
            edits.append(_Edit(key_line, end, _rows(head, value, sub_col)))
        added = [task for task in new if task not in quality]
        if added:
            last = list(quality)[-1]
            key_col = quality.lc.key(last)[1]
            value_cols = {quality.lc.value(k)[1] for k in quality}
            aligned = value_cols.pop() if len(value_cols) == 1 else 0
            end = value_end(lines, quality.lc.key(last)[0], key_col)
            rows: tuple[str, ...] = ()
            for task in added:
                key = " " * key_col + f"{task}:"
                if new[task].inline is not None:
                    rows += (key.ljust(aligned - 1) + f" {new[task].inline}\n",)
                else:
                    rows += _rows(key, new[task], key_col + 2)
            edits.append(_Edit(end, end, rows))
        return edits
    # No quality yet, or a flow mapping: write the whole mapping as a block.
    merged = {str(k): Entry(render(v)) for k, v in (quality or {}).items()}
    merged.update(new)
    indent = " " * entry_col
    rows = (f"{indent}quality:{eol_comment(entry, 'quality')}\n",)
    for task, value in merged.items():
        if value.inline is not None:
            rows += (f"{indent}  {task}: {value.inline}\n",)
        else:
            rows += _rows(f"{indent}  {task}:", value, len(indent) + 4)
    if "quality" in entry:
        line = entry.lc.key("quality")[0]
        return [_Edit(line, value_end(lines, line, entry_col), rows)]
    last = list(entry)[-1]
    end = value_end(lines, entry.lc.key(last)[0], entry_col)
    return [_Edit(end, end, rows)]


def _rows(head: str, value: Entry, sub_col: int) -> tuple[str, ...]:
    """A mapping-form entry's lines: its key line, then each sub-entry at ``sub_col``."""
    return (f"{head}\n", *(f"{' ' * sub_col}{key}: {text}\n" for key, text in value.nested))


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
