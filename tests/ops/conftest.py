"""A real ``perfics serve`` in front of the stub upstream (``tests/backends/stub_upstream.py``)
for the operations tests: three models, so routing, refinement rounds and fallbacks all show
in the metrics and on the dashboard, and one calibrated quality list beside guessed ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends.conftest import Stub
from tests.conftest import ServerProcess

POLICY = """\
version: 1
default_task: general
reference_model: {{id: gpt-4o, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10.0}}
refinement: {{critique_max_tokens: 50, template_tokens: 20, stop_phrase: "NO ISSUES"}}
tasks:
  general: {{max_rounds: 1, answer_tokens: 100}}
  coding:  {{max_rounds: 2, answer_tokens: 200, keywords: [python, code]}}
  quick:   {{max_rounds: 0, answer_tokens: 50}}
aliases:
  gpt-4o: {{task: general}}
models:
  - id: large
    backend: openai
    model: stub
    api_base: http://127.0.0.1:{port}/ok-large/v1
    context_window: 8192
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality:
      general: [6.0, 7.5]  # calibrated 2026-12-01: n=120, suites=facts, machine=test
      coding: [5.0, 6.0, 6.5]
  - id: small
    backend: openai
    model: stub
    api_base: http://127.0.0.1:{port}/ok-small/v1
    context_window: 4096
    input_usd_per_mtok: 0.1
    output_usd_per_mtok: 0.2
    quality:
      default: [4.0, 4.6, 4.7]  # calibrated 2026-12-01: n=300, suites=facts+math, machine=test
  - id: flaky
    backend: openai
    model: stub
    api_base: http://127.0.0.1:{port}/e503-flaky/v1
    context_window: 4096
    input_usd_per_mtok: 0.1
    output_usd_per_mtok: 0.2
    quality: {{quick: [9.0]}}
"""
"""``quick`` requests plan ``flaky`` first, which always answers 503: each falls back."""


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.stop()


def write_policy(directory: Path, stub: Stub) -> Path:
    path = directory / "ops-policy.yaml"
    path.write_text(POLICY.format(port=stub.port))
    return path


@pytest.fixture(scope="module")
def ops_policy(stub: Stub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_policy(tmp_path_factory.mktemp("ops"), stub)


@pytest.fixture(scope="module")
def served(ops_policy: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(ops_policy)
    yield server
    server.stop()
