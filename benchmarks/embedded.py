"""The embedded path: tokens/s streamed through ``perfics serve`` on the bundled SmolLM2 against
llama-cpp-python called in-process on the same model, prompt and settings.

Both sides load the GGUF the same way (``n_ctx`` 2048, ``n_batch`` 512, the backend's default
thread count, written out in the policy so both sides agree), render the same prompt with the
model's chat template, and sample greedily (temperature 0) with the backend's other settings,
up to ``MAX_TOKENS``. The in-process side is the lowest level there
is: ``Llama.generate`` token by token in a loop, in a process of its own (started once, driven
one generation per line on stdin). The proxy side is a streaming HTTP request with refinement
rounds 0, read by a blocking client that timestamps each content chunk.

Reported per side, median of ``repetitions`` runs after a warm-up (which also fills both KV
caches with the prompt, so no run re-reads it): time to first token, decode tokens/s after the
first token ((tokens - 1) / (last - first)), and end-to-end tokens/s (tokens / total time).

    python -m benchmarks.embedded --worker THREADS   # the in-process side (used by the benchmark)
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.processes import HOST, ROOT, Server
from benchmarks.servers import MASTER_KEY, MODEL, perfics_policy, start_perfics

PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle. "
    "Describe the weather, the sea and the keeper's thoughts."
)
MAX_TOKENS = 200
MODEL_REF = "bundled:smollm2-135m"


def run(workdir: Path, repetitions: int, threads: int | None = None) -> dict[str, Any]:
    """Both sides on ``threads`` llama.cpp threads (default: the backend's default)."""
    if threads is None:
        from proxy.backends.llamacpp import default_threads

        threads = default_threads()
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.embedded", "--worker", str(threads)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    proxy: Server | None = None
    try:
        proxy = start_perfics(perfics_policy(0, embedded_threads=threads), workdir)
        sides: dict[str, list[dict[str, float]]] = {"in_process": [], "perfics": []}
        for repetition in range(repetitions + 1):  # the first is the warm-up
            in_process = _ask_worker(worker)
            through_proxy = _stream_through(proxy)
            if repetition:
                sides["in_process"].append(in_process)
                sides["perfics"].append(through_proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        if worker.stdin is not None:
            worker.stdin.close()
        worker.wait(timeout=30)
    result: dict[str, Any] = {name: _median(runs) for name, runs in sides.items()}
    result["n_threads"] = threads
    result["runs"] = sides
    result["decode_ratio"] = result["perfics"]["decode_tps"] / result["in_process"]["decode_tps"]
    result["end_to_end_ratio"] = (
        result["perfics"]["end_to_end_tps"] / result["in_process"]["end_to_end_tps"]
    )
    return result


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _ask_worker(worker: subprocess.Popen[str]) -> dict[str, float]:
    assert worker.stdin is not None
    assert worker.stdout is not None
    worker.stdin.write("run\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError("the in-process llama.cpp worker exited")
    result: dict[str, float] = json.loads(line)
    return result


def _stream_through(proxy: Server) -> dict[str, float]:
    body = json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    connection = http.client.HTTPConnection(HOST, proxy.port, timeout=300)
    headers = {"content-type": "application/json", "authorization": f"Bearer {MASTER_KEY}"}
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body, headers)
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"perfics answered {response.status}: {response.read()[:300]!r}")
    first = last = 0.0
    tokens = 0
    while line := response.readline():
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        if any(choice["delta"].get("content") for choice in chunk["choices"]):
            last = time.perf_counter()
            first = first or last
    connection.close()
    return _timings(started, first, last, tokens)


def _timings(started: float, first: float, last: float, tokens: int) -> dict[str, float]:
    return {
        "ttft_ms": (first - started) * 1e3,
        "tokens": tokens,
        "decode_tps": (tokens - 1) / (last - first),
        "end_to_end_tps": tokens / (last - started),
    }


def _worker(threads: int) -> None:
    """Load the model once, then generate once per line read on stdin, printing the timings."""
    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from proxy.backends.bundled import resolve_model_path

    llama = Llama(
        model_path=str(resolve_model_path(MODEL_REF)),
        n_ctx=2048,
        n_threads=threads,
        n_batch=512,
        verbose=False,
    )
    template = llama.metadata["tokenizer.chat_template"]
    eos = llama.detokenize([llama.token_eos()], special=True).decode()
    bos = llama.detokenize([llama.token_bos()], special=True).decode()
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    text = formatter(messages=[{"role": "user", "content": PROMPT}]).prompt
    for _ in sys.stdin:
        started = time.perf_counter()
        prompt = llama.tokenize(text.encode(), add_bos=False, special=True)
        first = last = 0.0
        tokens = 0
        for token in llama.generate(
            prompt, temp=0.0, top_p=1.0, top_k=40, min_p=0.05, repeat_penalty=1.1
        ):
            if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
                break
            llama.detokenize([token])
            tokens += 1
            last = time.perf_counter()
            first = first or last
            if tokens >= MAX_TOKENS:
                break
        print(json.dumps(_timings(started, first, last, tokens)), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(int(sys.argv[2]))
    else:
        sys.exit("run the embedded benchmark with: python -m benchmarks --only embedded")
