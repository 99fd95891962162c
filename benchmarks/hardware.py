"""Prefill and decode throughput of a policy's embedded models, for their ``hardware`` figures.

For each ``backend: llamacpp`` model: load it as the proxy does, then three times evaluate a
~400-token prompt from an empty cache and greedily decode 128 tokens, reading llama.cpp's own
counters (prompt-eval and eval time). Prints the median of each; run it on a quiet machine.

    .venv/bin/python -m benchmarks.hardware [--policy policies/default.yaml] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics

from proxy.backends.bundled import resolve_model_path
from proxy.backends.llamacpp import default_threads
from routing.policy_loader import load_policy

PROMPT = " ".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog near the river bank." for i in range(24)
)


def measure(path: str, threads: int, context: int) -> tuple[float, float, int]:
    import llama_cpp

    llama = llama_cpp.Llama(model_path=path, n_ctx=context, n_threads=threads, verbose=False)
    tokens = llama.tokenize(PROMPT.encode(), add_bos=True)
    prefill, decode = [], []
    for _ in range(3):
        llama.reset()  # type: ignore[no-untyped-call]
        llama_cpp.llama_perf_context_reset(llama.ctx)
        for count, _token in enumerate(llama.generate(tokens, temp=0.0), start=1):
            if count >= 128:
                break
        perf = llama_cpp.llama_perf_context(llama.ctx)
        prefill.append(perf.n_p_eval / (perf.t_p_eval_ms / 1000))
        decode.append(perf.n_eval / (perf.t_eval_ms / 1000))
    llama.close()
    return statistics.median(prefill), statistics.median(decode), len(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--policy", default="policies/default.yaml")
    parser.add_argument(
        "--threads", type=int, default=default_threads(), help="default: as the proxy serves"
    )
    args = parser.parse_args()
    policy = load_policy(args.policy)
    print(f"n_threads={args.threads}, 3 runs each, median; llama.cpp's own counters")
    print(f"{'model':<16} {'prompt':>6} {'prefill tok/s':>14} {'decode tok/s':>13}")
    for spec in policy.models:
        if spec.backend != "llamacpp":
            continue
        path = str(resolve_model_path(spec.model))
        prefill, decode, prompt = measure(path, args.threads, spec.context_window)
        print(f"{spec.id:<16} {prompt:>6} {prefill:>14.0f} {decode:>13.0f}")


if __name__ == "__main__":
    main()
