"""Real ``perfics serve`` processes for the hardening tests: one in front of the stub upstream
(no model to load), with small limits so the tests run in seconds."""

from __future__ import annotations

import resource
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.backends.conftest import Stub, label
from tests.conftest import ServerProcess

STUB_POLICY = """
version: 1
default_task: general
reference_model: {{id: gpt-4o, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10.0}}
refinement:
  critique_max_tokens: 20
  template_tokens: 30
  critique_prompt: "Review it; reply {{stop_phrase}} if fine."
  rewrite_prompt: "Rewrite it."
server:
  max_body_bytes: {max_body_bytes}
  body_timeout_s: {body_timeout_s}
  header_timeout_s: {header_timeout_s}
  max_connections: {max_connections}
tasks:
  general: {{max_rounds: 2, answer_tokens: 40}}
models:
  - id: up
    backend: openai
    model: stub
    api_base: "{api_base}"
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality: {{default: [5.0, 6.0, 6.5]}}
"""


class Served(ServerProcess):
    """``perfics serve`` with a hardening test's policy: info-level log next to the policy file
    (``log_path``), ready on ``/healthz`` (``/readyz`` details are for admins only)."""

    def __init__(
        self,
        policy: Path,
        *,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.log_path = policy.with_suffix(".log")
        super().__init__(
            policy,
            env,
            host=host,
            log_level="info",
            ready="/healthz",
            stderr_path=self.log_path,
            preexec=preexec,
        )


def limit_address_space(gib: float) -> Callable[[], None]:
    """A ``preexec_fn`` capping the child's address space: a regression that lets a request
    grow the process without bound kills the child, not the machine running the tests."""

    def apply() -> None:
        size = int(gib * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return apply


@pytest.fixture(scope="module")
def upstream() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.stop()


def write_policy(tmp: Path, text: str, **values: object) -> Path:
    path = tmp / "policy.yaml"
    defaults: dict[str, object] = {
        "max_connections": 20,
        "header_timeout_s": 2.0,
        "body_timeout_s": 2.0,
    }
    path.write_text(textwrap.dedent(text.format(**{**defaults, **values})))
    return path


@pytest.fixture(scope="module")
def served(upstream: Stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The proxy in front of the stub, with a 64 KiB body limit, 2 s header and body deadlines
    and at most 20 connections."""
    policy = write_policy(
        tmp_path_factory.mktemp("served"),
        STUB_POLICY,
        api_base=upstream.url(label("ok")),
        max_body_bytes=65536,
    )
    server = Served(policy)
    yield server
    server.stop()
