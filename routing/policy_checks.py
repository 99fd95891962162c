"""Rules that span policy sections, checked on the raw (or dumped) policy data.

They tolerate malformed data — whatever the schema rejects is reported by the schema — so the
loader can run them alongside field validation and report every problem at once. Each problem
is ``(loc, message)`` with ``loc`` a path into the data, as pydantic reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from routing.backend_options import BACKENDS

Loc = tuple[str | int, ...]

RESERVED_MODEL_NAMES = frozenset({"auto"})
"""Request ``model`` values with a meaning of their own."""

DEFAULT_QUALITY_KEY = "default"
PRICING_KEYS = ("input_usd_per_mtok", "output_usd_per_mtok", "hardware")


def cross_check(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems with: ``default_task`` and alias tasks (must be declared), task names (``default``
    is reserved), model ids (unique, not ``auto``), alias ids (not ``auto``, not a model id),
    quality keys (declared tasks or ``default``) and pricing (every model needs one)."""
    problems: list[tuple[Loc, str]] = []
    tasks = data.get("tasks")
    task_names = [name for name in tasks if isinstance(name, str)] if _is_map(tasks) else None
    known = ", ".join(task_names or ())

    def check_task(loc: Loc, task: object) -> None:
        if task_names is not None and isinstance(task, str) and task not in task_names:
            problems.append((loc, f"unknown task '{task}' (declared tasks: {known})"))

    if task_names is not None and DEFAULT_QUALITY_KEY in task_names:
        problems.append((("tasks", DEFAULT_QUALITY_KEY), "'default' is reserved for quality lists"))
    check_task(("default_task",), data.get("default_task"))

    model_ids: dict[str, int] = {}
    models = data.get("models")
    for position, model in enumerate(models if isinstance(models, list | tuple) else ()):
        if not _is_map(model):
            continue
        model_id = model.get("id")
        if isinstance(model_id, str):
            if model_id in RESERVED_MODEL_NAMES:
                problems.append((("models", position, "id"), f"'{model_id}' is reserved"))
            elif model_id in model_ids:
                first = model_ids[model_id]
                problems.append(
                    (
                        ("models", position, "id"),
                        f"duplicate model id '{model_id}' (models.{first})",
                    )
                )
            else:
                model_ids[model_id] = position
        quality = model.get("quality")
        if _is_map(quality) and task_names is not None:
            for key in quality:
                if key != DEFAULT_QUALITY_KEY and key not in task_names:
                    problems.append(
                        (
                            ("models", position, "quality", key),
                            f"unknown task '{key}' (quality keys are declared tasks or 'default')",
                        )
                    )
        priced = any(model.get(key) is not None for key in PRICING_KEYS)
        if not priced:
            problems.append(
                (
                    ("models", position),
                    "no pricing: give input_usd_per_mtok and output_usd_per_mtok, or hardware",
                )
            )
        problems.extend(
            (("models", position, *loc), message) for loc, message in model_checks(model)
        )

    aliases = data.get("aliases")
    for alias_id, alias in aliases.items() if _is_map(aliases) else ():
        if alias_id in RESERVED_MODEL_NAMES:
            problems.append((("aliases", alias_id), f"'{alias_id}' is reserved"))
        elif alias_id in model_ids:
            problems.append((("aliases", alias_id), f"'{alias_id}' is also a model id"))
        if _is_map(alias):
            check_task(("aliases", alias_id, "task"), alias.get("task"))
    return problems


def model_checks(model: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems within one model entry that span its fields: ``api_base`` (required, optional or
    forbidden by the backend: ``routing.backend_options.BACKENDS``) and pricing (direct prices
    together, and not alongside ``hardware``), and an embedded model that embeds having no
    quality (it cannot also generate). A model without any pricing is a policy-level
    problem."""
    problems: list[tuple[Loc, str]] = []
    backend = model.get("backend")
    kind = BACKENDS.get(backend) if isinstance(backend, str) else None
    api_base = model.get("api_base")
    if kind is not None and kind.api_base == "required" and not api_base:
        problems.append((("api_base",), f"required for backend {backend}"))
    if kind is not None and kind.api_base == "forbidden" and api_base is not None:
        problems.append((("api_base",), f"not allowed for backend {backend} (it runs in-process)"))
    given_in = model.get("input_usd_per_mtok") is not None
    given_out = model.get("output_usd_per_mtok") is not None
    if given_in != given_out:
        missing = "output_usd_per_mtok" if given_in else "input_usd_per_mtok"
        problems.append(((missing,), "input_usd_per_mtok and output_usd_per_mtok go together"))
    if (given_in or given_out) and model.get("hardware") is not None:
        problems.append(
            (("hardware",), "price the model one way: input/output_usd_per_mtok or hardware")
        )
    capabilities = model.get("capabilities")
    listed = capabilities if isinstance(capabilities, list | tuple) else (capabilities,)
    if backend == "llamacpp" and "embeddings" in listed and model.get("quality"):
        # llama.cpp loads a model either to embed or to generate.
        problems.append(
            (
                ("quality",),
                "an embedded model that lists embeddings is loaded to embed only: give it no "
                "quality (add the same .gguf a second time to chat with it)",
            )
        )
    return problems


def _is_map(value: object) -> TypeGuard[Mapping[Any, Any]]:
    return isinstance(value, Mapping)
