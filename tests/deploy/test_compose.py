"""examples/compose/docker-compose.yml: valid against the Compose Specification's JSON schema
(the copy check-jsonschema ships: no network), and its perfics service laid out like the image
(read-only root, the image's volumes writable, its user)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import yaml

from tests.conftest import ROOT
from tests.deploy.conftest import image_facts

COMPOSE = ROOT / "examples" / "compose" / "docker-compose.yml"


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def test_the_compose_example_follows_the_compose_specification() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    validator = jsonschema.validators.validator_for(compose_schema())(compose_schema())
    problems = [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    assert problems == []
    broken = {**document, "services": {"perfics": {"readonly": True}}}  # a typo of read_only
    assert list(validator.iter_errors(broken)), "the schema check cannot fail"


def test_perfics_in_compose_runs_read_only_with_the_image_volumes() -> None:
    image = image_facts()
    document = yaml.safe_load(COMPOSE.read_text())
    perfics = document["services"]["perfics"]
    assert perfics["read_only"] is True
    assert perfics["user"] == f"{image.uid}:{image.gid}"
    writable = {v.split(":")[1] for v in perfics.get("volumes", []) if not v.endswith(":ro")}
    writable |= set(perfics.get("tmpfs", []))
    assert image.volumes <= writable
    named = {v.split(":")[0] for v in perfics["volumes"] if not v.startswith((".", "/"))}
    assert named <= set(document.get("volumes", {}))
