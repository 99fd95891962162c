"""Dependencies point one way: routing/ is pure; only HTTP modules import the web stack; each
backend stands alone (no backend imports another, and nothing outside the backends imports
one); and the backend table in routing names every implementation the proxy has."""

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
WEB_STACK = {"fastapi", "starlette", "uvicorn"}
HTTP_MODULE_PREFIXES = ("app", "http", "server")
BACKEND_MODULES = {"llamacpp", "openai_compat", "litellm_backend"}
"""The implementations; ``base``, ``bundled``, ``openai_protocol``, ``replicas``, ``scripted``
and ``tool_calls`` are the shared contract and helpers."""


def imported_roots(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in ``path``, including those inside functions."""
    for line, name in imported_names(path):
        yield line, name.split(".")[0]


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every absolute import in ``path``, and of relative imports
    resolved against ``path``'s package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    inside = path.is_relative_to(ROOT)
    package = path.relative_to(ROOT).with_suffix("").parts[:-1] if inside else ()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                yield node.lineno, node.module
            elif node.level:
                base = package[: len(package) - node.level + 1]
                for alias in node.names:
                    parts = [*base, *(node.module.split(".") if node.module else []), alias.name]
                    yield node.lineno, ".".join(parts)


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


def backend_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[:2] == ["proxy", "backends"] and len(parts) > 2 and parts[2] in BACKEND_MODULES:
        return parts[2]
    return None


def test_backends_stand_alone() -> None:
    offending = []
    for path in sorted((ROOT / "proxy").rglob("*.py")):
        own = path.stem if path.parent.name == "backends" else None
        for line, name in imported_names(path):
            other = backend_of(name)
            if other is not None and other != own:
                offending.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    # proxy.backends builds backends by the names in routing's table, importing none itself.
    assert offending == []


def test_the_backend_table_names_every_implementation() -> None:
    import importlib

    from routing.backend_options import BACKENDS

    implemented = set()
    for name, kind in BACKENDS.items():
        module, _, cls = kind.implementation.partition(":")
        backend = getattr(importlib.import_module(module), cls)
        assert callable(backend.from_policy), name
        implemented.add(module.rsplit(".", 1)[1])
    assert implemented == BACKEND_MODULES


def test_the_backend_table_says_which_implementations_score() -> None:
    """``BackendKind.scores`` (the planner counts ``best_of``'s scoring prefills where true)
    holds exactly for the implementations with ``Scorer``'s ``likelihood``."""
    import importlib

    from proxy.backends.base import Scorer
    from routing.backend_options import BACKENDS

    def implementation(name: str) -> type:
        module, _, cls = BACKENDS[name].implementation.partition(":")
        found: type = getattr(importlib.import_module(module), cls)
        return found

    method = next(name for name in vars(Scorer) if not name.startswith("_"))
    assert method == "likelihood"
    scoring = {name for name in BACKENDS if callable(getattr(implementation(name), method, None))}
    assert scoring == {name for name, kind in BACKENDS.items() if kind.scores} == {"llamacpp"}


def test_no_import_cycles() -> None:
    """No module of proxy/ or routing/ reaches itself through its imports, those under
    ``TYPE_CHECKING`` and inside functions included (a package and its own submodules aside:
    importing a submodule always runs its package)."""
    import grimp

    graph = grimp.build_graph("proxy", "routing", cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if module.startswith(imported + ".") or imported.startswith(module + "."):
                continue
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" -> ".join((module, *back)))
    assert cycles == []
