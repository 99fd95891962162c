"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``, installed by
``make test``; driven by Playwright, never Playwright's own browsers) against a real ``perfics
serve``. The page loads with no console error and no request leaving 127.0.0.1, shows each
task's picks and chart with calibrated and guessed figures told apart and the live figures of
the requests made; the plan form gives the plan ``perfics route --json`` prints. A screenshot
is kept in ``test-artifacts/`` (``PERFICS_TEST_ARTIFACTS``)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.calibrate.policy_writer import calibrated_lists
from routing.quality_provenance import calibrated_quality
from tests.conftest import ROOT, ServerProcess

CHROMIUM = Path(os.environ.get("PERFICS_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("PERFICS_TEST_ARTIFACTS", ROOT / "test-artifacts"))
# Without the background-networking switches Chromium reaches out on its own (updates,
# safe browsing, variations); here every connection it makes must be the page's.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def route_json(policy: Path, *args: str) -> dict[str, Any]:
    found = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "route", "--policy", str(policy), *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(found.stdout)
    return result


def test_calibrated_lists_are_read_without_ruamel_as_calibrate_reads_them() -> None:
    files = [*ROOT.glob("policies/*.yaml"), *ROOT.glob("tests/**/*.yaml")]
    assert any(calibrated_lists(path.read_text()) for path in files)
    for path in files:
        text = path.read_text()
        assert calibrated_quality(text) == calibrated_lists(text), path


def test_plan_json_is_what_perfics_route_prints(served: ServerProcess, ops_policy: Path) -> None:
    for form, flags in (
        ({"task": "coding", "prompt": "hi"}, ["--task", "coding", "--prompt", "hi"]),
        (
            {"prompt": "python code please", "max_rounds": "1"},
            ["--prompt", "python code please", "--max-rounds", "1"],
        ),
        (
            {"prompt_tokens": "900", "budget_usd": "0.0002"},
            ["--prompt-tokens", "900", "--budget-usd", "0.0002"],
        ),
    ):
        response = httpx.get(f"{served.base_url}/dashboard/plan.json", params=form)
        assert response.status_code == 200, response.text
        assert response.json() == route_json(ops_policy, *flags)
    impossible = httpx.get(f"{served.base_url}/dashboard/plan.json", params={"budget_usd": "1e-12"})
    assert impossible.status_code == 400
    assert impossible.json()["error"]["code"] == "no_plan"


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium, headless, with a throwaway profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: make .venv/.browser-installed installs it")
    with chromium() as context:
        yield context


@pytest.mark.slow
def test_the_dashboard_in_a_real_browser(
    browser: Any, served: ServerProcess, ops_policy: Path
) -> None:
    chat = f"{served.base_url}/v1/chat/completions"
    for content, task in (("Explain tides.", None), ("python code", None), ("hi", "quick")):
        headers = {"x-perfics-task": task} if task else {}
        body = {"model": "auto", "messages": [{"role": "user", "content": content}]}
        assert httpx.post(chat, json=body, headers=headers, timeout=10).status_code == 200

    page = browser.new_page()
    console: list[str] = []
    requested: list[str] = []
    outside: list[str] = []
    local = f"{served.base_url}/"

    def guard(route: Any) -> None:
        if route.request.url.startswith(local):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.on(
        "console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{served.base_url}/dashboard", wait_until="networkidle")
    assert page.title() == "perfics dashboard"
    for task in ("general", "coding", "quick"):
        assert page.locator(f"#task-{task} svg.chart").count() == 1
        assert page.locator(f"#picks-{task} tbody tr").count() == 3
    general_chart = page.locator("#task-general svg.chart").inner_html()
    assert "large (calibrated)" in general_chart
    assert "small (calibrated)" in general_chart
    assert "large (guessed)" in page.locator("#task-coding svg.chart").inner_html()
    cost_rows = page.locator("#cost-by-model tbody tr").all_inner_texts()
    assert any(row.startswith("large\tgeneral") for row in cost_rows), cost_rows
    assert page.locator("#calls-by-kind tbody tr").count() == 3  # draft, critique, rewrite
    assert "The last reload succeeded." in page.locator("#reloads").inner_text()
    with page.expect_request(f"{served.base_url}/dashboard/live", timeout=10_000):
        pass  # the script refreshes the live figures in place

    page.select_option("select[name=task]", "coding")
    page.fill("input[name=budget_usd]", "0.001")
    page.fill("input[name=max_rounds]", "1")
    page.fill("textarea[name=prompt]", "Write a function that reverses a string.")
    with page.expect_navigation(wait_until="networkidle"):
        page.click("form.plan-form button[type=submit]")
    rows = [
        [cell.strip() for cell in row.split("\t")]
        for row in page.locator("#plan-result tbody tr").all_inner_texts()
    ]
    expected = route_json(
        ops_policy,
        "--task", "coding",
        "--budget-usd", "0.001",
        "--max-rounds", "1",
        "--prompt", "Write a function that reverses a string.",
    )  # fmt: skip
    assert [
        [
            row[0],
            row[1],
            int(row[2]),
            int(row[3]),
            float(row[4]) if row[4] != "-" else None,
            float(row[5]),
            row[6] == "yes",
            row[7] if len(row) > 7 and row[7] else None,
        ]
        for row in rows
    ] == [
        [
            c["model"],
            c["technique"],
            c["rounds"],
            c["samples"],
            c["score"],
            c["estimated_cost_usd"],
            c["eligible"],
            c["reason"],
        ]
        for c in expected["candidates"]
    ]
    summary = page.locator("#plan-summary").inner_text()
    assert f"{expected['model']}, {expected['technique']}, {expected['rounds']} round" in summary
    assert page.locator("textarea[name=prompt]").input_value().startswith("Write a function")

    page.goto(f"{served.base_url}/dashboard", wait_until="networkidle")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.close()
    assert console == []
    assert outside == []
    assert requested
    assert all(url.startswith(local) for url in requested)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
