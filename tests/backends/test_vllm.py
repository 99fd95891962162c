"""VLLMBackend: queue depth from each replica's /metrics breaks ties in outstanding requests."""

from __future__ import annotations

from proxy.backends.base import SamplingParams
from proxy.backends.openai_compat import VLLMBackend, parse_vllm_metrics

from .conftest import Stub, eventually, label, openai_spec

METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
vllm:num_requests_waiting{engine="1",model_name="a {b} c"} 2.0
vllm:num_requests_waiting_by_reason{reason="capacity"} 40.0
vllm:num_requests_swapped{engine="0"} 5.0
vllm:gpu_cache_usage_perc{engine="0"} 0.5
"""


def test_parse_vllm_metrics_sums_series_and_ignores_the_rest() -> None:
    assert parse_vllm_metrics(METRICS) == (9, 3)
    assert parse_vllm_metrics("vllm:num_requests_waiting 4\nvllm:num_requests_running 1 17000") == (
        4,
        1,
    )
    assert parse_vllm_metrics("") == (0, 0)


async def test_lower_waiting_count_breaks_ties(stub: Stub, stub2: Stub) -> None:
    busy, idle = label("wait5"), label("wait0")
    backend = VLLMBackend(
        openai_spec(stub.url(busy), stub2.url(idle), backend="vllm", metrics_cache_s=0.05)
    )
    await backend.start()
    try:
        first, second = backend.replicas
        await eventually(
            lambda: (first.waiting, first.running, second.running) == (5, 1, 1), within=5
        )
        assert (first.waiting, second.waiting, second.running) == (5, 0, 1)
        for _ in range(4):
            await backend.complete([{"role": "user", "content": "hi"}], SamplingParams())
    finally:
        await backend.aclose()
    assert stub.stats(busy)["requests"] == 0
    assert stub2.stats(idle)["requests"] == 4
