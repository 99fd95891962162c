"""A bounded schemathesis run over OpenAI's own OpenAPI document: the chat-completions and
models operations, against a proxy in front of the stub upstream. Any 5xx, or an error that
is not OpenAI's envelope, fails the run."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.backends.conftest import Stub, label

from .conftest import STUB_POLICY, Served, write_policy
from .openai_spec import served_operations

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed(upstream: Stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    policy = write_policy(
        tmp_path_factory.mktemp("fuzz"),
        STUB_POLICY,
        api_base=upstream.url(label("ok")),
        max_body_bytes=1 << 20,
        max_connections=64,
        header_timeout_s=30.0,
        body_timeout_s=30.0,
    )
    server = Served(policy)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def openai_schema() -> Any:
    return schemathesis.openapi.from_dict(served_operations())


# max_examples per operation: a few hundred requests in all.
EXAMPLES = {"/chat/completions": 160, "/models": 10, "/models/{model}": 30}


def test_openai_operations_never_5xx_and_errors_are_enveloped(
    openai_schema: Any, fuzzed: Served
) -> None:
    # schemathesis' own pytest plugin does not run under this pytest; its strategies do.
    operations = [result.ok() for result in openai_schema.get_all_operations()]
    assert sorted(op.path for op in operations) == sorted(EXAMPLES)
    for operation in operations:

        @settings(
            max_examples=EXAMPLES[operation.path],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case[Any]) -> None:
            if (
                case.path == "/chat/completions"
                and isinstance(case.body, dict)
                and zlib.crc32(json.dumps(case.body, sort_keys=True, default=str).encode()) % 2
            ):
                # Half the bodies name a model the proxy serves, so they reach planning, the
                # backend and refinement instead of stopping at model_not_found.
                case.body["model"] = "auto"
            response = case.call(base_url=f"{fuzzed.base_url}/v1", timeout=60)
            assert response.status_code < 500, (response.status_code, response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}, response.text[:500]

        check()
    assert fuzzed.alive
