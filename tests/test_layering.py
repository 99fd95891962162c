"""Dependencies point one way: routing/ is pure, and only HTTP modules import the web stack."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_ROUTING = {
    "fastapi",
    "starlette",
    "httpx",
    "aiohttp",
    "llama_cpp",
    "litellm",
    "uvicorn",
    "proxy",
}
WEB_STACK = {"fastapi", "starlette"}
HTTP_MODULE_PREFIXES = ("app", "http", "server", "sse")


def imported_roots(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in ``path``, including those inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def test_imported_roots_sees_nested_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os.path\n\ndef f():\n    from fastapi import FastAPI\n")
    assert list(imported_roots(module)) == [(1, "os"), (4, "fastapi")]


def test_routing_imports_nothing_impure() -> None:
    modules = sorted((ROOT / "routing").rglob("*.py"))
    assert modules
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {root}"
        for path in modules
        for line, root in imported_roots(path)
        if root in FORBIDDEN_IN_ROUTING
    ]
    assert offending == []


def test_only_http_modules_import_the_web_stack() -> None:
    offending = []
    for path in sorted((ROOT / "proxy").rglob("*.py")):
        relative = path.relative_to(ROOT / "proxy")
        allowed = relative.parts[0] != "backends" and path.name.startswith(HTTP_MODULE_PREFIXES)
        for line, root in imported_roots(path):
            if root in WEB_STACK and not allowed:
                offending.append(f"proxy/{relative.as_posix()}:{line}: {root}")
    assert offending == []
