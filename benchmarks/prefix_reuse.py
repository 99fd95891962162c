"""Prefix reuse in refinement: prompt tokens sent vs actually evaluated by llama.cpp.

Runs one 2-round refinement (draft, critique, rewrite, critique, rewrite) on the bundled
SmolLM2 through the same engine the proxy serves with, and prints each call's prompt tokens,
the tokens llama.cpp had to evaluate (the rest came from its KV cache), and wall time.

    .venv/bin/python -m benchmarks.prefix_reuse [--policy FILE] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncGenerator, Sequence

from proxy.backends.base import Completion, Delta, Message, SamplingParams
from proxy.backends.llamacpp import LlamaCppBackend
from proxy.refine import Finished, RefinementPrompts, refine
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


class Timed:
    """Wraps a backend and records every call's usage and wall time."""

    def __init__(self, inner: LlamaCppBackend) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.rows: list[tuple[str, int, int, int, float]] = []

    @property
    def ready(self) -> bool:
        return self.inner.ready

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        started = time.perf_counter()
        result = await self.inner.complete(messages, params)
        self._record(result, started)
        return result

    async def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        started = time.perf_counter()
        async for delta in self.inner.stream(messages, params):
            if delta.usage is not None:
                self._record(Completion("", "stop", delta.usage), started)
            yield delta

    def _record(self, result: Completion, started: float) -> None:
        names = ["draft", "critique 1", "rewrite 1", "critique 2", "rewrite 2"]
        name = (
            names[len(self.rows)] if len(self.rows) < len(names) else f"call {len(self.rows) + 1}"
        )
        usage = result.usage
        evaluated = (
            usage.evaluated_prompt_tokens if usage.evaluated_prompt_tokens is not None else -1
        )
        self.rows.append(
            (
                name,
                usage.prompt_tokens,
                evaluated,
                usage.completion_tokens,
                time.perf_counter() - started,
            )
        )


async def one_run(backend: Timed, prompts: RefinementPrompts, messages: list[Message]) -> None:
    backend.rows.clear()
    params = SamplingParams(max_tokens=120, temperature=0.0, seed=1)
    async for event in refine(
        backend,
        messages,
        params,
        rounds=2,
        prompts=prompts,
        within_budget=lambda *_: True,
        live=False,
    ):
        if isinstance(event, Finished):
            done = event.result.rounds
    print(f"{done} rounds done")
    print(f"{'call':<11} {'sent':>6} {'evaluated':>10} {'generated':>10} {'wall s':>7}")
    for name, sent, evaluated, generated, wall in backend.rows:
        print(f"{name:<11} {sent:>6} {evaluated:>10} {generated:>10} {wall:>7.2f}")
    sent_total = sum(r[1] for r in backend.rows)
    evaluated_total = sum(r[2] for r in backend.rows)
    print(f"{'total':<11} {sent_total:>6} {evaluated_total:>10}")
    print(f"evaluated / sent = {evaluated_total / sent_total:.1%} (target <= 25%)")
    print()


async def main(policy_path: str, model: str) -> None:
    policy = load_policy(policy_path)
    backend = Timed(LlamaCppBackend(policy.model(model)))
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
