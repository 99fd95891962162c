"""``GET /metrics`` on a real ``perfics serve``: after scripted requests through the OpenAI SDK
the parsed figures equal what the requests did (counts by model, task, status and stream; cost,
reference cost and tokens equal the sums of the responses' headers and ``perfics`` objects;
internal calls equal the rounds run; fallbacks); unknown model names add no series; who may
read it; the multiprocess mode of ``perfics serve --workers``."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from proxy.app import create_app
from proxy.backends.scripted import ScriptedBackend
from proxy.ops.metrics import mark_process_dead
from proxy.settings import Settings
from tests.backends.conftest import Stub, label
from tests.conftest import POLICIES, ServerProcess

Labels = tuple[tuple[str, str], ...]


def scrape(base_url: str, **headers: str) -> dict[str, dict[Labels, float]]:
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def scrape_when(base_url: str, requests: int) -> dict[str, dict[Labels, float]]:
    """A scrape once ``requests`` requests are counted: a request is recorded just after its
    last byte is sent, so its client can be a moment ahead of the figures."""
    deadline = time.monotonic() + 5
    while total(samples := scrape(base_url), "perfics_requests_total") < requests:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return samples


def total(samples: dict[str, dict[Labels, float]], name: str, **match: str) -> float:
    return sum(
        value
        for labels, value in samples.get(name, {}).items()
        if all(dict(labels).get(k) == v for k, v in match.items())
    )


def perfics_series(samples: dict[str, dict[Labels, float]]) -> int:
    return sum(len(series) for name, series in samples.items() if name.startswith("perfics_"))


def test_metrics_equal_what_the_requests_did(served: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key="x", max_retries=0)
    before = scrape(served.base_url)
    assert total(before, "perfics_requests_total") == 0
    answered: list[dict[str, Any]] = []  # model, task, stream, cost, reference, usage, rounds
    messages: Any = [{"role": "user", "content": "Explain tides."}]

    for prompt in ("Explain tides.", "Write python code to sort a list.", "Name a colour."):
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": prompt}]
        )
        body, h = raw.parse(), raw.headers
        assert body.usage is not None
        answered.append(
            {
                "model": h["x-perfics-model"],
                "task": h["x-perfics-task"],
                "stream": "false",
                "cost": Decimal(h["x-perfics-cost-usd"]),
                "reference": Decimal(h["x-perfics-reference-cost-usd"]),
                "prompt": body.usage.prompt_tokens,
                "completion": body.usage.completion_tokens,
                "rounds": int(h["x-perfics-rounds"]),
                "planned": int(h["x-perfics-rounds-planned"]),
                "fallbacks": int(h["x-perfics-fallbacks"]),
            }
        )
    for _ in range(2):
        raw_stream = client.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        h = raw_stream.headers
        perfics: dict[str, Any] = {}
        usage = None
        for chunk in raw_stream.parse():
            perfics = (chunk.model_extra or {}).get("perfics") or perfics
            usage = chunk.usage or usage
        assert usage is not None
        assert perfics
        answered.append(
            {
                "model": h["x-perfics-model"],
                "task": h["x-perfics-task"],
                "stream": "true",
                "cost": Decimal(str(perfics["cost_usd"])),
                "reference": Decimal(str(perfics["reference_cost_usd"])),
                "prompt": usage.prompt_tokens,
                "completion": usage.completion_tokens,
                "rounds": perfics["rounds"],
                "planned": perfics["rounds_planned"],
                "fallbacks": int(h["x-perfics-fallbacks"]),
            }
        )
    for _ in range(2):  # planned on flaky, which answers 503: answered by the next model
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, extra_headers={"X-Perfics-Task": "quick"}
        )
        body, h = raw.parse(), raw.headers
        assert body.usage is not None
        assert h["x-perfics-fallbacks"] == "1"
        answered.append(
            {
                "model": h["x-perfics-model"],
                "task": "quick",
                "stream": "false",
                "cost": Decimal(h["x-perfics-cost-usd"]),
                "reference": Decimal(h["x-perfics-reference-cost-usd"]),
                "prompt": body.usage.prompt_tokens,
                "completion": body.usage.completion_tokens,
                "rounds": 0,
                "planned": int(h["x-perfics-rounds-planned"]),
                "fallbacks": 1,
            }
        )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="auto", messages=messages, extra_headers={"X-Perfics-Budget-Usd": "0.0000001"}
        )

    after = scrape_when(served.base_url, len(answered) + 2)
    requests = after["perfics_requests_total"]
    expected = Counter(
        (("model", a["model"]), ("status", "200"), ("stream", a["stream"]), ("task", a["task"]))
        for a in answered
    )
    expected[(("model", "none"), ("status", "404"), ("stream", "false"), ("task", "none"))] += 1
    expected[(("model", "none"), ("status", "400"), ("stream", "false"), ("task", "none"))] += 1
    assert {labels: value for labels, value in requests.items() if value} == dict(expected)
    assert {a["model"] for a in answered} >= {"large", "small"}

    def close(name: str, wanted: Decimal | int) -> None:
        assert total(after, name) == pytest.approx(float(wanted), rel=1e-9, abs=1e-12), name

    close("perfics_cost_usd_total", sum(a["cost"] for a in answered))
    close("perfics_reference_cost_usd_total", sum(a["reference"] for a in answered))
    close("perfics_prompt_tokens_total", sum(a["prompt"] for a in answered))
    close("perfics_completion_tokens_total", sum(a["completion"] for a in answered))
    # Per-call series: one draft per answer; the stub never says NO ISSUES, so every round
    # is one critique and one rewrite; their tokens add up to the requests' tokens.
    rounds = sum(a["rounds"] for a in answered)
    assert rounds >= 3
    assert total(after, "perfics_calls_total", call="draft") == len(answered)
    assert total(after, "perfics_calls_total", call="critique") == rounds
    assert total(after, "perfics_calls_total", call="rewrite") == rounds
    close("perfics_call_prompt_tokens_total", sum(a["prompt"] for a in answered))
    close("perfics_call_completion_tokens_total", sum(a["completion"] for a in answered))
    close("perfics_call_cost_usd_total", sum(a["cost"] for a in answered))
    assert total(after, "perfics_call_duration_seconds_count") == len(answered) + 2 * rounds
    assert total(after, "perfics_fallbacks_total", model="flaky") == 2
    assert total(after, "perfics_refinement_rounds_planned_sum") == sum(
        a["planned"] for a in answered
    )
    assert total(after, "perfics_refinement_rounds_sum") == rounds
    assert total(after, "perfics_refinement_stops_total", reason="max_rounds") == len(answered)
    assert total(after, "perfics_request_duration_seconds_count") == len(answered)
    assert total(after, "perfics_time_to_first_token_seconds_count") == 2
    for model in ("large", "small", "flaky"):
        assert total(after, "perfics_backend_up", model=model) == 1
        assert total(after, "perfics_replica_up", model=model) == 1
    assert total(after, "perfics_policy_reloads_total", result="success") == 1
    (info,) = after["perfics_policy_info"].items()
    assert info[1] == 1
    assert len(dict(info[0])["hash"]) == 12
    assert "process_resident_memory_bytes" in after


def test_unknown_model_names_add_no_series(served: ServerProcess) -> None:
    url = f"{served.base_url}/v1/chat/completions"
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=10) as http:
        assert http.post(url, json={**body, "model": "warm-up-unknown"}).status_code == 404
        before = scrape(served.base_url)
        for _ in range(1000):
            model = f"gpt-{uuid.uuid4().hex}"
            assert http.post(url, json={**body, "model": model}).status_code == 404
    after = scrape(served.base_url)
    assert perfics_series(after) == perfics_series(before)
    unknown = (("model", "none"), ("status", "404"), ("stream", "false"), ("task", "none"))
    assert (
        after["perfics_requests_total"][unknown] == before["perfics_requests_total"][unknown] + 1000
    )


def test_who_may_read_metrics_and_the_dashboard() -> None:
    backends = {"alpha": ScriptedBackend("alpha"), "beta": ScriptedBackend("beta")}
    keyed = Settings(policy=str(POLICIES / "scripted.yaml"), admin_key="adm1n", metrics_key="m3")
    with TestClient(create_app(keyed, backends=backends)) as http:
        refused = http.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert http.get("/metrics", headers={"authorization": "Bearer m3"}).status_code == 200
        assert http.get("/metrics", headers={"authorization": "Bearer adm1n"}).status_code == 200
        assert http.get("/metrics", auth=("ops", "adm1n")).status_code == 200
        assert http.get("/metrics", auth=("ops", "m3")).status_code == 200
        # The metrics key reads /metrics only.
        assert http.get("/dashboard", headers={"authorization": "Bearer m3"}).status_code == 401
        assert http.get("/dashboard", auth=("ops", "adm1n")).status_code == 200
        cross = {"authorization": "Bearer adm1n", "sec-fetch-site": "cross-site"}
        assert http.get("/metrics", headers=cross).status_code == 403
    open_settings = Settings(policy=str(POLICIES / "scripted.yaml"))
    with TestClient(create_app(open_settings, backends=backends)) as http:
        assert http.get("/metrics").status_code == 200  # the test client counts as loopback
        assert http.get("/dashboard").status_code == 200
    with TestClient(create_app(open_settings, backends=backends), client=("10.1.2.3", 5)) as http:
        remote = http.get("/metrics")
        assert remote.status_code == 403
        assert set(remote.json()["error"]) == {"message", "type", "param", "code"}
        assert http.get("/dashboard").status_code == 403
    off = Settings(policy=str(POLICIES / "scripted.yaml"), metrics=False)
    with TestClient(create_app(off, backends=backends)) as http:
        assert http.get("/metrics").status_code == 404
        assert "Metrics are off" in http.get("/dashboard").text


def test_multiprocess_mode_merges_workers_files_and_drops_dead_ones(
    ops_policy: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = ServerProcess(ops_policy, env={"PROMETHEUS_MULTIPROC_DIR": str(directory)})
    try:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(2):
            response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=10)
            assert response.status_code == 200
        samples = scrape_when(server.base_url, 2)
        pid = server.proc.pid
    finally:
        server.stop()
    assert total(samples, "perfics_requests_total", status="200") == 2
    assert total(samples, "perfics_backend_up", model="large") == 1
    assert "process_resident_memory_bytes" not in samples  # per-process figures do not merge
    live = sorted(p.name for p in directory.iterdir() if p.name.startswith("gauge_live"))
    assert live
    assert all(name.endswith(f"_{pid}.db") for name in live)
    mark_process_dead(pid, {"PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert not [p for p in directory.iterdir() if p.name.startswith("gauge_live")]
    assert [p for p in directory.iterdir() if p.name.startswith("counter_")]
    mark_process_dead(pid, {})  # without the variable: nothing to do
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None


FAILING_POLICY = """\
version: 1
default_task: general
reference_model: {{id: gpt-4o, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10.0}}
refinement: {{critique_max_tokens: 50, template_tokens: 20, stop_phrase: "NO ISSUES"}}
tasks:
  general: {{max_rounds: 1, answer_tokens: 100}}
models:
  - id: drafty
    backend: openai
    model: stub
    api_base: {drafty}
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality: {{default: [9.0, 9.5]}}
  - id: backup
    backend: openai
    model: stub
    api_base: {backup}
    context_window: 4096
    input_usd_per_mtok: 0.1
    output_usd_per_mtok: 0.2
    quality: {{default: [4.0, 4.5]}}
  - id: lonely
    backend: openai
    model: stub
    api_base: {lonely}
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality: {{default: [1.0, 1.5]}}
"""


def test_calls_of_models_that_failed_are_counted(stub: Stub, tmp_path: Path) -> None:
    """``drafty`` drafts, then goes down before its critique: ``backup`` answers, and the
    draft ``drafty`` made is in the per-call series under its name (and in the request's cost,
    as the response's header says). ``lonely``, pinned, drafts and goes down with nothing
    after it: the request fails, and what its draft cost is counted all the same (the spend
    ledger charges it)."""
    policy = tmp_path / "failing.yaml"
    policy.write_text(
        FAILING_POLICY.format(
            drafty=stub.url(label("okthen1")),
            backup=stub.url(label("ok")),
            lonely=stub.url(label("okthen1")),
        )
    )
    server = ServerProcess(policy)
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
        messages: Any = [{"role": "user", "content": "Explain tides."}]
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
        assert raw.headers["x-perfics-model"] == "backup"
        assert raw.headers["x-perfics-fallbacks"] == "1"
        answered_cost = float(raw.headers["x-perfics-cost-usd"])
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="lonely", messages=messages)
        assert failed.value.status_code in (502, 503)
        after = scrape_when(server.base_url, 2)
    finally:
        server.stop()
    # The stub's usage: 7 prompt and 3 completion tokens a call.
    draft_at_1_and_2 = (7 * 1.0 + 3 * 2.0) / 1e6
    assert total(after, "perfics_calls_total", model="drafty", call="draft") == 1
    assert total(after, "perfics_calls_total", model="drafty", call="critique") == 0
    assert total(after, "perfics_calls_total", model="backup") == 3  # draft, critique, rewrite
    assert total(after, "perfics_calls_total", model="lonely", call="draft") == 1
    assert total(after, "perfics_call_cost_usd_total", model="lonely") == pytest.approx(
        draft_at_1_and_2
    )
    assert answered_cost == pytest.approx(
        total(after, "perfics_call_cost_usd_total", model="drafty")
        + total(after, "perfics_call_cost_usd_total", model="backup"),
        rel=1e-6,
    )
    # The request-level cost: the answered request's (under the model that answered) and the
    # failed one's finished draft (under the model it was planned on).
    assert total(after, "perfics_cost_usd_total", model="backup") == pytest.approx(answered_cost)
    assert total(after, "perfics_cost_usd_total", model="lonely") == pytest.approx(draft_at_1_and_2)
    assert total(after, "perfics_requests_total", model="lonely", status="200") == 0
    assert total(after, "perfics_call_cost_usd_total") == pytest.approx(
        total(after, "perfics_cost_usd_total")
    )
