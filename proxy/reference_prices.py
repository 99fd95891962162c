"""Reference prices from litellm's local cost map, for a policy's ``reference_model`` that names
no prices of its own.

The map is the JSON file shipped inside the litellm wheel, read without importing litellm (the
import takes seconds and, unless told otherwise, fetches a newer map from the network). If a
litellm release moves the file, litellm is imported with ``LITELLM_LOCAL_MODEL_COST_MAP=True``
and its ``model_cost`` read instead. Never the network.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_COST_MAP_FILE = "model_prices_and_context_window_backup.json"


def litellm_reference_prices(model_id: str) -> tuple[float, float] | None:
    """USD per million (input, output) tokens of ``model_id`` (``gpt-4o``, or with a provider
    prefix, ``openai/gpt-4o``); None when litellm is not installed or does not know the id."""
    costs = _cost_map()
    if costs is None:
        return None
    entry = costs.get(model_id)
    if entry is None and "/" in model_id:
        entry = costs.get(model_id.split("/", 1)[1])
    if not isinstance(entry, Mapping):
        return None
    try:
        return (
            float(entry["input_cost_per_token"]) * 1e6,
            float(entry["output_cost_per_token"]) * 1e6,
        )
    except (KeyError, TypeError, ValueError):
        return None


@functools.cache
def _cost_map() -> Mapping[str, Any] | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        path = Path(location) / _COST_MAP_FILE
        if path.is_file():
            costs = json.loads(path.read_bytes())
            return costs if isinstance(costs, dict) else None
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    return dict(litellm.model_cost)
