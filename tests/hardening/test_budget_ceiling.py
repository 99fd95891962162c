"""A declared budget is a ceiling, even against an upstream that ignores ``max_tokens``.

The stub's ``greedy400`` label answers 400 one-token words whatever it is asked for, with
usage that says so. 50 budgeted requests at once (budgets from below the draft's estimate to
several rounds' worth, one to three choices, streamed and not): every answered request must
report a cost within its budget, and every refused one ``budget_exceeded``.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.backends.conftest import Stub, label

from .conftest import STUB_POLICY, Served, write_policy

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Tell me about tides, at length."}
]


@pytest.fixture(scope="module")
def greedy(upstream: Stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    policy = write_policy(
        tmp_path_factory.mktemp("greedy"),
        STUB_POLICY,
        api_base=upstream.url(label("greedy400")),
        max_body_bytes=65536,
        # 50 clients at once on a busy machine: the deadlines are not what this test is about
        max_connections=200,
        header_timeout_s=30.0,
        body_timeout_s=30.0,
    )
    server = Served(policy)
    yield server
    server.stop()


async def one(
    client: openai.AsyncOpenAI, budget: float, n: int, stream: bool
) -> tuple[float, Decimal | None, str | None]:
    headers = {"X-Perfics-Budget-Usd": f"{budget:.9f}"}
    try:
        if stream:
            chunks = await client.chat.completions.create(
                model="auto",
                messages=MESSAGES,
                n=n,
                stream=True,
                extra_headers=headers,
            )
            cost = None
            async for chunk in chunks:
                extra = chunk.model_extra or {}
                if "perfics" in extra:
                    cost = Decimal(str(extra["perfics"]["cost_usd"]))
            return budget, cost, None
        raw = await client.chat.completions.with_raw_response.create(
            model="auto",
            messages=MESSAGES,
            n=n,
            extra_headers=headers,
        )
        return budget, Decimal(raw.headers["x-perfics-cost-usd"]), None
    except openai.BadRequestError as exc:
        return budget, None, exc.code


async def load(server: Served) -> list[tuple[float, Decimal | None, str | None]]:
    client = openai.AsyncOpenAI(
        base_url=f"{server.base_url}/v1", api_key="x", max_retries=0, timeout=60
    )
    rng = random.Random(7)
    # One draft of this prompt: ~13 in + 40 out at 1 and 2 USD/Mtok, ~93e-6 USD; each round
    # several times that.
    jobs = [
        one(client, rng.uniform(50e-6, 1500e-6), rng.choice((1, 1, 2, 3)), rng.random() < 0.4)
        for _ in range(50)
    ]
    results = await asyncio.gather(*jobs)
    await client.close()
    return results


def test_no_response_costs_more_than_its_budget(greedy: Served) -> None:
    results = asyncio.run(load(greedy))
    answered = [(budget, cost) for budget, cost, _ in results if cost is not None]
    refused = [code for _, cost, code in results if cost is None]
    assert len(answered) >= 30, results
    assert set(refused) <= {"budget_exceeded"}
    for budget, cost in answered:
        assert cost <= Decimal(f"{budget:.9f}"), (budget, cost)
    # Refinement really ran where the budget allowed it: some answers cost well above a draft.
    assert max(cost for _, cost in answered) > Decimal("0.0003")
    assert greedy.alive


def test_a_budget_too_large_to_bind_is_served_and_one_not_finite_is_refused(
    served: Served,
) -> None:
    """Issue 21: a declared budget from about 1e302 up was a 500 (``answer_cap`` overflowed).
    The largest finite budgets are served as if none were declared, streaming or not, by body
    or header; infinity and NaN are 400 naming the field."""
    sdk = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key="x", max_retries=0)
    largest = sys.float_info.max
    # Each declared by body or by header: (extra_body, extra_headers).
    declared: list[tuple[dict[str, object] | None, dict[str, str] | None]] = [
        ({"perfics": {"budget_usd": 1e308}}, None),
        ({"perfics": {"budget_usd": largest}}, None),
        (None, {"X-Perfics-Budget-Usd": "1e308"}),
        (None, {"X-Perfics-Budget-Usd": repr(largest)}),
    ]
    for how in declared:
        body, headers = how
        raw = sdk.chat.completions.with_raw_response.create(
            model="auto", messages=MESSAGES, extra_body=body, extra_headers=headers
        )
        assert raw.http_response.status_code == 200, how
        assert raw.headers["x-perfics-stop-reason"] != "budget"
        assert raw.headers["x-perfics-rounds"] == raw.headers["x-perfics-rounds-planned"]
        chunks = list(
            sdk.chat.completions.create(
                model="auto",
                messages=MESSAGES,
                stream=True,
                extra_body=body,
                extra_headers=headers,
            )
        )
        finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish, how
        assert finish[0].model_extra is not None, how
        assert finish[0].model_extra["perfics"]["stop_reason"] != "budget"
    for value in ("inf", "nan", "1e309"):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(
                model="auto",
                messages=MESSAGES,
                extra_headers={"X-Perfics-Budget-Usd": value},
            )
        assert refused.value.param == "budget_usd", value
    assert served.alive
