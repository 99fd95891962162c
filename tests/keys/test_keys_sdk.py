"""Keys through the real OpenAI SDK against a real ``perfics serve``: made with ``perfics
keys``, limits that narrow the request, revocation, rotation, expiry, rate limits with
OpenAI's headers, the admin routes and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from tests.backends.conftest import Stub, label
from tests.keys.conftest import KeyedServer, keys_policy, make_key, perfics
from tests.keys.test_budget_concurrency import query, wait_until

ADMIN = {"authorization": "Bearer admin-secret-1"}
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 2+2?"}]


def body_of(error: openai.APIStatusError) -> dict[str, Any]:
    body = error.body
    assert isinstance(body, dict)
    return body


def client(server: KeyedServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)


@pytest.fixture
def served(tmp_path: Path, stub_base: str) -> Iterator[tuple[KeyedServer, str]]:
    database = f"sqlite:///{tmp_path}/keys.db"
    # Idle leases go back with the next ledger batch (every 0.2 s), so a test reads settled
    # figures as soon as that batch is written, without waiting out an idle time.
    server = KeyedServer(
        keys_policy(tmp_path, stub_base, key_cache_s=0.0, lease_idle_s=0.0), database
    )
    yield server, database
    server.stop()


def test_a_key_with_limits_is_served_and_narrows_what_it_may_ask(
    served: tuple[KeyedServer, str],
) -> None:
    server, database = served
    secret = make_key(
        database,
        "--name",
        "team-a",
        "--budget-usd",
        "3",
        "--period",
        "month",
        "--rpm",
        "100",
        "--tpm",
        "100000",
        "--models",
        "up",
        "--tasks",
        "general",
        "--max-rounds",
        "2",
    )
    sdk = client(server, secret)
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=ASK)
    answer = raw.parse()
    assert answer.choices[0].message.content
    assert raw.headers["x-perfics-model"] == "up"
    assert raw.headers["x-ratelimit-limit-requests"] == "100"
    assert raw.headers["x-ratelimit-remaining-requests"] == "99"
    assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 100000
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    # The key's remaining budget is the request's ceiling when it declares none.
    assert 0 < float(raw.headers["x-perfics-budget-usd"]) <= 3

    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk.chat.completions.create(model="other", messages=ASK)
    assert body_of(denied.value)["param"] == "model"
    assert "team-a" in denied.value.message
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk.chat.completions.create(
            model="auto", messages=ASK, extra_headers={"X-Perfics-Task": "coding"}
        )
    assert body_of(denied.value)["param"] == "task"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk.chat.completions.create(
            model="auto", messages=ASK, extra_headers={"X-Perfics-Max-Rounds": "3"}
        )
    assert body_of(denied.value)["param"] == "max_rounds"
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(
            model="auto", messages=ASK, extra_headers={"X-Perfics-Budget-Usd": "50"}
        )
    assert refused.value.code == "insufficient_quota"
    assert body_of(refused.value)["type"] == "insufficient_quota"

    wait_until(lambda: query(database, "SELECT SUM(reserved_usd) FROM key_spend") == [(0,)])
    listed = json.loads(perfics("keys", "list", "--json", database=database).stdout)
    (team,) = listed
    assert team["name"] == "team-a"
    assert team["spent_usd"] > 0
    assert team["remaining_usd"] == pytest.approx(3 - team["spent_usd"])
    assert team["reserved_usd"] == 0
    spend = json.loads(
        perfics("spend", "--by", "key", "--format", "json", database=database).stdout
    )
    row = next(r for r in spend if r["key"] == "team-a")
    assert row["requests"] == 5  # one answered, four refused: every request is in the ledger
    assert row["cost_usd"] == pytest.approx(team["spent_usd"])
    assert row["saving_usd"] > 0
    # The dashboard's live figures show it too.
    live = httpx.get(f"{server.base_url}/dashboard/live", headers=ADMIN)
    assert live.status_code == 200
    spend_table = live.text.split('id="key-spend"', 1)[1].split("</table>", 1)[0]
    assert "team-a" in spend_table
    assert ">5<" in spend_table
    # And /metrics, for the budget alert (examples/monitoring/alerts.yml).
    scrape = httpx.get(f"{server.base_url}/metrics", headers=ADMIN).text
    gauges = {
        (sample.name, sample.labels["key"]): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name.startswith("perfics_key_")
    }
    assert gauges[("perfics_key_budget_usd", "team-a")] == 3
    assert gauges[("perfics_key_spent_usd", "team-a")] == pytest.approx(team["spent_usd"])


def test_missing_wrong_revoked_rotated_and_expired_keys_are_refused(
    served: tuple[KeyedServer, str],
) -> None:
    server, database = served
    secret = make_key(database, "--name", "team-b")
    assert client(server, secret).chat.completions.create(model="auto", messages=ASK).choices
    for bad in ("", "sk-not-ours", "pk-" + "A" * 43, "' OR '1'='1", "pk-" + "x" * 5000):
        with pytest.raises(openai.AuthenticationError):
            client(server, bad or "none").chat.completions.create(model="auto", messages=ASK)
    assert httpx.get(f"{server.base_url}/v1/models").status_code == 401

    rotated = perfics("keys", "rotate", "team-b", database=database)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    with pytest.raises(openai.AuthenticationError):
        client(server, secret).chat.completions.create(model="auto", messages=ASK)
    assert client(server, new).chat.completions.create(model="auto", messages=ASK).choices

    revoked = httpx.post(f"{server.base_url}/admin/keys/team-b/revoke", headers=ADMIN)
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as refused:
        client(server, new).chat.completions.create(model="auto", messages=ASK)
    assert "revoked" in refused.value.message

    expired = make_key(database, "--name", "old", "--expires", "2001-01-01")
    with pytest.raises(openai.AuthenticationError):
        client(server, expired).chat.completions.create(model="auto", messages=ASK)


def test_rate_limit_answers_429_with_retry_after(served: tuple[KeyedServer, str]) -> None:
    server, database = served
    secret = make_key(database, "--name", "slow-team", "--rpm", "2")
    sdk = client(server, secret)
    sdk.chat.completions.create(model="auto", messages=ASK)
    second = sdk.chat.completions.with_raw_response.create(model="auto", messages=ASK)
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="auto", messages=ASK)
    assert limited.value.code == "rate_limit_exceeded"
    headers = limited.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "2"


def test_a_key_whose_requests_cost_less_than_estimated_is_not_refused_once_they_settle(
    served: tuple[KeyedServer, str],
) -> None:
    """Issue 21: the first grant takes the key's whole budget (3 USD, under five estimates of
    0.675 USD); requests, one after another, draw their estimates until the budget as this
    process saw it pays for no plan, though each cost the stub's 0.013 USD a call. Once the
    ledger batch has settled them, the next request is planned within what the store has
    left, not refused on the view the draws left behind (it was: "the key 't' has 0.018 USD
    left", for as long as the process lived)."""
    server, database = served
    secret = make_key(database, "--name", "t", "--budget-usd", "3", "--rpm", "30")
    sdk = client(server, secret)
    sent, refusal = 0, None
    while sent < 12 and refusal is None:
        sent += 1
        try:
            sdk.chat.completions.create(model="auto", messages=ASK)
        except openai.RateLimitError as refused:
            refusal = refused
    assert refusal is None or refusal.code == "insufficient_quota"
    wait_until(lambda: query(database, "SELECT COUNT(*) FROM ledger")[0][0] == sent)
    ((spent,),) = query(database, "SELECT spent_usd FROM key_spend")
    assert spent < 1.0  # at most 12 requests of 5 calls at 0.013 USD
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=ASK)
    assert raw.http_response.status_code == 200


def test_a_keys_sample_cap_narrows_what_a_request_may_declare(
    served: tuple[KeyedServer, str],
) -> None:
    server, database = served
    sdk = client(server, make_key(database, "--name", "few", "--max-samples", "2"))
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk.chat.completions.create(
            model="auto", messages=ASK, extra_headers={"X-Perfics-Max-Samples": "3"}
        )
    assert body_of(denied.value)["param"] == "max_samples"
    assert "allows at most 2 samples; the request declared 3" in denied.value.message
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, extra_body={"perfics": {"max_samples": 2}}
    )
    assert raw.parse().choices[0].message.content
    assert (raw.headers["x-perfics-technique"], raw.headers["x-perfics-samples-planned"]) == (
        "refine",
        "1",
    )


def test_admin_key_routes_and_bad_input(served: tuple[KeyedServer, str]) -> None:
    server, _ = served
    base = f"{server.base_url}/admin/keys"
    assert httpx.post(base, json={"name": "x"}).status_code == 401  # loopback is not enough
    made = httpx.post(base, json={"name": "ops", "budget_usd": 1.5, "rpm": 10}, headers=ADMIN)
    assert made.status_code == 201
    body = made.json()
    assert body["secret"].startswith("pk-")
    assert body["remaining_usd"] == 1.5
    listed = httpx.get(base, headers=ADMIN).json()["data"]
    assert [k["name"] for k in listed] == ["ops"]
    assert "secret" not in listed[0]
    changed = httpx.patch(
        f"{base}/ops", json={"rpm": None, "max_rounds": 1, "max_samples": 3}, headers=ADMIN
    )
    assert changed.status_code == 200
    view = changed.json()
    assert (view["rpm"], view["max_rounds"], view["max_samples"]) == (None, 1, 3)
    cleared = httpx.patch(f"{base}/ops", json={"max_samples": None}, headers=ADMIN)
    assert cleared.json()["max_samples"] is None
    for bad, param in (
        ({"name": "x'; DROP TABLE api_keys;--"}, "name"),
        ({"name": "ok", "budget_usd": -1}, "budget_usd"),
        ({"name": "ok", "period": "year"}, "period"),
        ({"name": "ok", "max_samples": -2}, "max_samples"),
        ({"name": "ok", "max_samples": "4"}, "max_samples"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "ops"}, "name"),  # taken
    ):
        refused = httpx.post(base, json=bad, headers=ADMIN)
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["param"] == param, refused.json()
    missing = httpx.get(f"{base}/' OR '1'='1", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "key_not_found"
    unknown = httpx.get(f"{server.base_url}/admin/nothing-here", headers=ADMIN)
    assert unknown.status_code == 404
    assert set(unknown.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    spend = httpx.get(f"{server.base_url}/admin/spend?by=colour", headers=ADMIN)
    assert spend.status_code == 400
    assert spend.json()["error"]["param"] == "by"
    assert httpx.get(base, headers=ADMIN).json()["data"][0]["name"] == "ops"  # table intact


def test_a_request_the_upstreams_fail_is_charged_what_its_finished_calls_cost(
    tmp_path: Path, upstream: Stub
) -> None:
    """The answering model drafts, then goes down before the critique; the fallback is down
    too. The key pays for the draft (7 prompt and 3 completion tokens at 1,000 and 2,000 USD
    per million: 0.013 USD), not the request's estimate (0.675 USD), streaming or not."""
    down = upstream.url(label("e503"))
    policy = keys_policy(tmp_path, "UP_BASE")
    text = policy.read_text().replace('"UP_BASE"', f'"{down}"')
    database = f"sqlite:///{tmp_path}/failed.db"
    secret = make_key(database, "--name", "unlucky", "--budget-usd", "10")
    for stream in (False, True):
        drafts_then_fails = upstream.url(label("okthen1"))
        policy.write_text(text.replace(f'"{down}"', f'"{drafts_then_fails}"', 1))
        server = KeyedServer(policy, database)
        try:
            reply = httpx.post(
                f"{server.base_url}/v1/chat/completions",
                json={"model": "auto", "messages": ASK, "stream": stream},
                headers={"authorization": f"Bearer {secret}"},
                timeout=30,
            )
        finally:
            server.stop()  # writes the ledger and gives the lease back
        if stream:  # the headers had gone: the failure is an event in the stream
            assert reply.status_code == 200
            assert '"error"' in reply.text
        else:
            assert reply.status_code in (502, 503), reply.text
    rows = query(
        database,
        "SELECT status, stream, prompt_tokens, completion_tokens, cost_usd FROM ledger ORDER BY id",
    )
    assert [(r[0] in (502, 503), r[1], r[2], r[3]) for r in rows] == [
        (True, 0, 7, 3),
        (True, 1, 7, 3),
    ]
    assert [r[4] for r in rows] == pytest.approx([0.013, 0.013])
    ((spent, reserved),) = query(database, "SELECT spent_usd, reserved_usd FROM key_spend")
    assert spent == pytest.approx(0.026)
    assert abs(reserved) < 1e-9
