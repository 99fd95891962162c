"""Runtime swaps: a backend stays open while any runtime still serving holds it."""

from __future__ import annotations

from pathlib import Path

from proxy.backends.scripted import ScriptedBackend
from proxy.runtime import build_runtime, retire
from proxy.settings import Settings
from tests.conftest import POLICIES


async def test_retire_keeps_backends_that_a_draining_runtime_still_uses(tmp_path: Path) -> None:
    alpha, beta = ScriptedBackend("alpha"), ScriptedBackend("beta")
    injected = {"alpha": alpha, "beta": beta}
    both = Settings(policy=str(POLICIES / "scripted.yaml"))
    only_beta = tmp_path / "beta.yaml"
    text = (POLICIES / "scripted.yaml").read_text()
    only_beta.write_text(text[: text.index("  - id: alpha")] + text[text.index("  - id: beta") :])
    a = await build_runtime(both, backends=injected)
    b = await build_runtime(both, previous=a, backends=injected)
    c = await build_runtime(Settings(policy=str(only_beta)), previous=b, backends=injected)
    assert set(c.backends) == {"beta"}

    a.acquire()  # a request still running on the oldest policy
    await retire(b, lambda: [a, c])
    assert not alpha.closed, "a still serves a request with alpha"
    a.release()
    await retire(a, lambda: [c])
    assert alpha.closed
    assert not beta.closed
