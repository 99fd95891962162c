"""Prefix reuse in refinement: prompt tokens sent vs actually evaluated by llama.cpp.

Runs one 2-round refinement (draft, critique, rewrite, critique, rewrite) on the bundled
SmolLM2 through the same engine the proxy serves with, and prints each call's prompt tokens,
the tokens llama.cpp had to evaluate (the rest came from its KV cache), and wall time.

    .venv/bin/python -m benchmarks.prefix_reuse [--policy FILE] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import asyncio

from proxy.backends.base import Message, SamplingParams
from proxy.backends.llamacpp import LlamaCppBackend
from proxy.calibrate.throughput import TimedBackend
from proxy.events import Finished
from proxy.refine import RefinementPrompts, refine
from routing.budget import no_budget
from routing.policy_loader import load_policy

SYSTEM = (
    "You are a careful assistant for a small engineering team. Answer precisely, state your "
    "assumptions, and prefer short concrete examples over long explanations."
)
QUESTION = "Explain what a hash table is and when you would not use one."
# A longer conversation, as applications with instructions or retrieved context send.
CONTEXT = " ".join(
    f"Note {i}: the service stores records in a table keyed by customer id, and lookups by "
    f"id happen on every request, while range scans by date run nightly."
    for i in range(1, 13)
)


CALLS = ["draft", "critique 1", "rewrite 1", "critique 2", "rewrite 2"]


async def one_run(
    backend: TimedBackend, prompts: RefinementPrompts, messages: list[Message]
) -> None:
    backend.calls.clear()
    params = SamplingParams(max_tokens=120, temperature=0.0, seed=1)
    async for event in refine(
        backend,
        messages,
        params,
        rounds=2,
        prompts=prompts,
        budget=no_budget(),
        live=False,
    ):
        if isinstance(event, Finished):
            done = event.result.rounds
    print(f"{done} rounds done")
    print(f"{'call':<11} {'sent':>6} {'evaluated':>10} {'generated':>10} {'wall s':>7}")
    sent_total = evaluated_total = 0
    for name, (timing, completion) in zip(CALLS, backend.calls, strict=False):
        usage = completion.usage
        evaluated = usage.evaluated_prompt_tokens or 0
        sent_total += usage.prompt_tokens
        evaluated_total += evaluated
        print(
            f"{name:<11} {usage.prompt_tokens:>6} {evaluated:>10} "
            f"{usage.completion_tokens:>10} {timing.total_s:>7.2f}"
        )
    print(f"{'total':<11} {sent_total:>6} {evaluated_total:>10}")
    print(f"evaluated / sent = {evaluated_total / sent_total:.1%} (target <= 25%)")
    print()


async def main(policy_path: str, model: str) -> None:
    policy = load_policy(policy_path)
    backend = TimedBackend(LlamaCppBackend(policy.model(model)))
    await backend.start()
    refinement = policy.refinement
    # The stop phrase is disabled so that both rounds run whatever the model says.
    prompts = RefinementPrompts(
        refinement.critique_prompt,
        refinement.rewrite_prompt,
        "\x00never\x00",
        refinement.critique_max_tokens,
    )
    print(f"model {model}, 2 rounds, answers up to 120 tokens, temperature 0\n")
    print("short conversation (system prompt + one question):")
    await one_run(
        backend,
        prompts,
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
    )
    print("longer conversation (system prompt + ~500 tokens of notes + question):")
    await one_run(
        backend,
        prompts,
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": CONTEXT + "\n\n" + QUESTION},
        ],
    )
    await backend.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--policy", default="policies/default.yaml")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    asyncio.run(main(args.policy, args.model))
