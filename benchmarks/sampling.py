"""k samples in one llama.cpp batch: what ``LlamaCppBackend.sample`` gains over one sequence.

In-process, on the bundled SmolLM2 (``n_ctx`` 2048, the backend's default thread count, or
``--embedded-threads``), one prompt asking for a long story so that no sequence ends early,
``MAX_TOKENS`` tokens per sequence, temperature 0.8 with a fixed seed. Each repetition, after a
warm-up that puts the prompt in the KV cache, measures side by side, in this order:

- **decode**: ``sample(k)`` for k = 1, 4 and 8; aggregate tokens/s = every sequence's
  completion tokens over the wall time of the call (the prompt is cached: one token is read);
- **draft**: ``complete()`` at temperature 0 (greedy), the draft a best-of-8 starts from;
- **best-of-8**: the same draft and then ``sample(7)`` at temperature 0.8, the candidates a
  best-of-8 chooses from (DESIGN.md "Selection techniques"), timed from the draft's start to
  the last sample's end; and ``sample(8)`` alone, all eight candidates in one batch;
- **one-sequence context**: ``Llama.generate`` greedy for the same tokens on a second model
  loaded the way llama-cpp-python loads it (a one-sequence context), beside this backend's
  ``complete()``, to show what holding ``MAX_SEQUENCES`` sequences costs a plain draft.

Reported: medians over the repetitions, aggregate tokens/s against k = 1, and the best-of-8's
latency over the draft's; and for each k the share of the call's wall time spent inside
``llama_decode`` (llama.cpp's own performance counters): what is left is this backend's work
around it (sampling, detokenising, stop texts, the hand-off to the event loop). Beside the
wall-clock rate, tokens per CPU second of this process (``time.process_time``): on a machine
other work shares, it tells what the batch saves from what the neighbours took. Targets
(issue 20): at least 2x the tokens/s of one sequence at k = 8, and a best-of-8 in at most 3x
the draft's latency.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

PROMPT = [
    {
        "role": "user",
        "content": "Write a long, detailed story about a lighthouse keeper who finds a message "
        "in a bottle. Describe the weather, the sea and the keeper's thoughts.",
    }
]
MAX_TOKENS = 128
SIZES = (1, 4, 8)


def run(repetitions: int, threads: int | None = None) -> dict[str, Any]:
    return asyncio.run(_run(repetitions, threads))


async def _run(repetitions: int, threads: int | None) -> dict[str, Any]:
    from proxy.backends.base import SamplingParams
    from proxy.backends.llamacpp import LlamaCppBackend, default_threads
    from routing.backend_options import LlamaCppOptions
    from routing.policy import ModelSpec

    threads = threads or default_threads()
    spec = ModelSpec(
        id="smollm2",
        backend="llamacpp",
        model="bundled:smollm2-135m",
        context_window=2048,
        input_usd_per_mtok=0.0,
        output_usd_per_mtok=0.0,
        options=LlamaCppOptions(n_threads=threads),
    )
    backend = LlamaCppBackend(spec)
    await backend.start()
    plain = _one_sequence_llama(threads)
    warm = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.8, seed=1)
    greedy = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, seed=1)
    runs: list[dict[str, float]] = []
    try:
        await backend.sample(PROMPT, warm, 8)  # warm-up: the prompt into the cache
        for repetition in range(repetitions):
            print(f"sampling: repetition {repetition + 1}/{repetitions} ...", flush=True)
            one: dict[str, float] = {}
            for k in SIZES:
                decoding = _decode_ms(backend)
                started, cpu = time.perf_counter(), time.process_time()
                answers = await backend.sample(PROMPT, warm.replace(seed=repetition), k)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                one[f"k{k}_decode_share"] = (_decode_ms(backend) - decoding) / 1000 / elapsed
                tokens = sum(a.usage.completion_tokens for a in answers)
                one[f"k{k}_tps"] = tokens / elapsed
                one[f"k{k}_cpu_tps"] = tokens / cpu
                one[f"k{k}_tokens"] = tokens
            started = time.perf_counter()
            draft = await backend.complete(PROMPT, greedy)
            one["draft_s"] = time.perf_counter() - started
            one["draft_tps"] = draft.usage.completion_tokens / one["draft_s"]
            await backend.sample(PROMPT, warm.replace(seed=repetition), 7)
            one["best_of_8_s"] = time.perf_counter() - started
            started = time.perf_counter()
            await backend.sample(PROMPT, warm.replace(seed=repetition), 8)
            one["sample_8_s"] = time.perf_counter() - started
            one["one_sequence_tps"] = _plain_greedy_tps(plain, backend, PROMPT)
            runs.append(one)
    finally:
        await backend.aclose()
        plain.close()
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return {
        "threads": threads,
        "max_tokens": MAX_TOKENS,
        "median": median,
        "runs": runs,
        "ratio_k8_over_k1": median["k8_tps"] / median["k1_tps"],
        "ratio_k4_over_k1": median["k4_tps"] / median["k1_tps"],
        "best_of_8_over_draft": median["best_of_8_s"] / median["draft_s"],
        "sample_8_over_draft": median["sample_8_s"] / median["draft_s"],
    }


def _decode_ms(backend: Any) -> float:
    """Milliseconds llama.cpp has spent in ``llama_decode`` on the backend's context so far, by
    its own performance counters (a step of k > 1 tokens counts as prompt evaluation there)."""
    import llama_cpp

    perf = llama_cpp.llama_perf_context(backend._llama.ctx)
    return float(perf.t_p_eval_ms + perf.t_eval_ms)


def _one_sequence_llama(threads: int) -> Any:
    from llama_cpp import Llama

    from proxy.backends.bundled import resolve_model_path

    path = resolve_model_path("bundled:smollm2-135m")
    return Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)


def _plain_greedy_tps(llama: Any, backend: Any, messages: list[dict[str, str]]) -> float:
    """Greedy tokens/s of ``Llama.generate`` on a one-sequence context, the prompt rendered and
    sampled as the backend does it, timed like the draft (from the call to the last token; the
    prompt is cached after the first repetition)."""
    from proxy.backends.base import SamplingParams
    from proxy.backends.llamacpp import _sampling

    prompt = backend._prompt_tokens(messages)
    options = _sampling(SamplingParams(temperature=0.0))
    count = 0
    started = time.perf_counter()
    for token in llama.generate(prompt, **options):
        if token == llama.token_eos():
            break
        count += 1
        if count >= MAX_TOKENS:
            break
    return count / (time.perf_counter() - started)


def table(result: dict[str, Any]) -> str:
    from proxy.backends.llamacpp import MAX_SEQUENCES

    m = result["median"]
    lines = [
        "| k sequences | tokens (all sequences) | aggregate tokens/s | vs k = 1 "
        "| tokens per CPU second | vs k = 1 | wall time in llama_decode |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in SIZES:
        lines.append(
            f"| {k} | {m[f'k{k}_tokens']:.0f} | {m[f'k{k}_tps']:.1f} "
            f"| {m[f'k{k}_tps'] / m['k1_tps']:.2f}x | {m[f'k{k}_cpu_tps']:.1f} "
            f"| {m[f'k{k}_cpu_tps'] / m['k1_cpu_tps']:.2f}x | {m[f'k{k}_decode_share']:.0%} |"
        )
    lines += [
        "",
        "| generation | latency s | vs the draft |",
        "|---|---:|---:|",
        f"| draft (complete, greedy) | {m['draft_s']:.2f} | 1.00x |",
        f"| best-of-8: draft + sample(7) | {m['best_of_8_s']:.2f} "
        f"| {result['best_of_8_over_draft']:.2f}x |",
        f"| sample(8) alone | {m['sample_8_s']:.2f} | {result['sample_8_over_draft']:.2f}x |",
        "",
        f"Greedy draft tokens/s, this backend's {MAX_SEQUENCES}-sequence context (complete): "
        f"{m['draft_tps']:.1f}; llama-cpp-python's one-sequence context (Llama.generate): "
        f"{m['one_sequence_tps']:.1f}.",
    ]
    return "\n".join(lines)
