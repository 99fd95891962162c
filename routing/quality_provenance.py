"""Which quality figures of a policy file were measured: those ``perfics calibrate`` wrote, with
``# calibrated DATE: n=...`` after the value on its line. Every other figure is a guess.

A task's plain list is ``(model, task)``; in the mapping form, its ``refine`` list is
``(model, task)`` too, and a technique table ``(model, "task.best_of")`` or
``(model, "task.vote")``.

PyYAML drops comments, so the file is composed (nodes keep their position) and the text after
each ``models[i].quality.<key>`` list on its last line is read.
"""

from __future__ import annotations

import yaml

MARK = "# calibrated "


def calibrated_quality(text: str) -> frozenset[tuple[str, str]]:
    """``(model id, quality key)`` for every list in ``text`` marked as calibrated; empty when
    the text is not a policy YAML."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return frozenset()
    lines = text.splitlines()
    found: set[tuple[str, str]] = set()
    for entry in _items(_value(root, "models")):
        model_id = _value(entry, "id")
        quality = _value(entry, "quality")
        if not isinstance(model_id, yaml.ScalarNode) or not isinstance(quality, yaml.MappingNode):
            continue
        for key, value in quality.value:
            if isinstance(value, yaml.MappingNode):
                for sub, figures in value.value:
                    name = key.value if sub.value == "refine" else f"{key.value}.{sub.value}"
                    if _marked(lines, figures):
                        found.add((str(model_id.value), str(name)))
            elif _marked(lines, value):
                found.add((str(model_id.value), str(key.value)))
    return frozenset(found)


def _marked(lines: list[str], value: yaml.Node) -> bool:
    end = value.end_mark
    rest = lines[end.line][end.column :] if end.line < len(lines) else ""
    return rest.strip().startswith(MARK)


def _value(node: yaml.Node | None, name: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for key, value in node.value if key.value == name), None)


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []
