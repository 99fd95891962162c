"""The ``perfics`` command line: route, policy check, serve's flags, exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy import cli

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "policies" / "default.yaml")
SCRIPTED = """\
version: 1
default_task: general
refinement:
  critique_max_tokens: 100
  template_tokens: 50  # above the short prompts' own estimate, so t = 50
  critique_prompt: "Critique it; reply {stop_phrase} if it is fine."
  rewrite_prompt: "Rewrite it."
tasks:
  general: {max_rounds: 2, answer_tokens: 200}
  coding: {max_rounds: 2, answer_tokens: 200, keywords: [python]}
aliases:
  gpt-4o: {task: general}
models:
  - id: big
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 4096
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    quality: {default: [6.0, 7.0, 7.5]}
  - id: small
    backend: llamacpp
    model: bundled:smollm2-135m
    context_window: 1000
    input_usd_per_mtok: 0.1
    output_usd_per_mtok: 0.2
    quality: {default: [5.0, 5.5, 5.6]}
"""


@pytest.fixture
def policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(SCRIPTED)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_route_json(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    # p = 100, a = 200: big r2 costs (1700 * 1.0 + 800 * 2.0) / 1e6 = 0.0033 (see
    # tests/routing/test_planner.py for every score).
    status, out, _ = run(capsys, "route", "--policy", policy, "--prompt-tokens", "100", "--json")
    assert status == 0
    body: dict[str, Any] = json.loads(out)
    assert set(body) == {
        "model",
        "rounds",
        "technique",
        "samples",
        "score",
        "estimated_cost_usd",
        "task",
        "task_source",
        "candidates",
    }
    assert (body["model"], body["rounds"], body["task"], body["task_source"]) == (
        "big",
        2,
        "general",
        "default",
    )
    assert (body["technique"], body["samples"]) == ("refine", 1)
    assert body["estimated_cost_usd"] == 0.0033
    assert body["score"] == pytest.approx(0.849074, abs=1e-6)
    assert len(body["candidates"]) == 6
    assert all(
        set(c)
        == {
            "model",
            "rounds",
            "technique",
            "samples",
            "score",
            "estimated_cost_usd",
            "eligible",
            "reason",
        }
        for c in body["candidates"]
    )
    assert [c["technique"] for c in body["candidates"] if c["model"] == "small"] == [
        "refine",
        "refine",
        "draft",
    ]


def test_route_plans_and_explains_techniques(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.routing.test_techniques import TECHNIQUES

    path = tmp_path / "techniques.yaml"
    path.write_text(TECHNIQUES)
    policy = str(path)
    # tests/routing/test_techniques.py computes every figure by hand.
    status, out, _ = run(capsys, "route", "--policy", policy, "--prompt-tokens", "100", "--json")
    body = json.loads(out)
    assert status == 0
    assert (body["model"], body["technique"], body["samples"], body["rounds"]) == (
        "local",
        "best_of",
        8,
        0,
    )
    assert body["estimated_cost_usd"] == 0.0064
    sampled = {
        (c["model"], c["technique"], c["samples"]): c["estimated_cost_usd"]
        for c in body["candidates"]
        if c["samples"] > 1
    }
    assert sampled == {
        ("local", "best_of", 8): 0.0064,
        ("local", "best_of", 4): 0.0032,
        ("local", "vote", 4): 0.002,
        ("remote", "best_of", 4): 0.002,
        ("remote", "vote", 4): 0.002,
    }

    status, out, _ = run(
        capsys, "route", "--policy", policy, "--prompt-tokens", "100", "--max-samples", "4"
    )
    assert status == 0
    assert out.startswith("remote, best_of 4 samples, task coding (default), score 0.6099")

    status, out, _ = run(
        capsys,
        "route",
        "--policy",
        policy,
        "--prompt-tokens",
        "100",
        "--max-samples",
        "4",
        "--explain",
    )
    lines = out.splitlines()
    assert status == 0
    assert lines[0].endswith("; round cap none; sample cap 4")
    assert lines[1].split() == [
        "model",
        "technique",
        "rounds",
        "samples",
        "Q",
        "cost_usd",
        "score",
        "status",
    ]
    assert lines[2].split() == [
        "*",
        "remote",
        "best_of",
        "0",
        "4",
        "5",
        "0.002",
        "0.6099",
        "eligible",
    ]
    rows = [line.split() for line in lines[3:]]
    assert [
        "local",
        "best_of",
        "0",
        "8",
        "6",
        "0.0064",
        "0.8097",
        "samples",
        "above",
        "cap",
    ] in rows
    assert ["local", "vote", "0", "4", "5", "0.002", "0.6099", "eligible"] in rows

    status, out, _ = run(
        capsys,
        "route",
        "--policy",
        policy,
        "--prompt-tokens",
        "100",
        "--uses",
        "tools",
        "--explain",
    )
    assert status == 0
    forced = [line.split() for line in out.splitlines()[2:] if "forced" in line]
    assert [row[:4] for row in forced] == [
        ["remote", "best_of", "0", "4"],
        ["remote", "vote", "0", "4"],
    ]
    assert all(row[-3:] == ["forced", "tool", "call"] for row in forced)

    status, _, err = run(capsys, "route", "--policy", policy, "--max-samples", "lots")
    assert status == 3
    assert "x-perfics-max-samples must be a non-negative integer" in err


def test_route_flags_are_declarations(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    status, out, _ = run(
        capsys,
        "route",
        "--policy",
        policy,
        "--task",
        "coding",
        "--budget-usd",
        "0.002",
        "--max-rounds",
        "2",
        "--prompt-tokens",
        "100",
        "--json",
    )
    body = json.loads(out)
    assert status == 0
    assert (body["model"], body["rounds"], body["task_source"]) == ("big", 1, "header")


def test_route_prompt_is_classified_and_estimated(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    status, out, _ = run(
        capsys, "route", "--policy", policy, "--prompt", "Fix my Python script", "--explain"
    )
    assert status == 0
    # "Fix my Python script": 20 chars -> ceil(20 / 4) + 4 = 9 prompt tokens
    assert out.splitlines()[0].startswith("task coding (classifier); tokens p=9 a=200 k=100 t=50")
    assert "*" in out.splitlines()[2]


def test_route_summary_and_model_choice(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    status, out, _ = run(capsys, "route", "--policy", policy, "--model", "small")
    assert status == 0
    assert out.startswith("small, 2 rounds, task general (default), score ")
    status, out, _ = run(capsys, "route", "--policy", policy, "--model", "gpt-4o")
    assert "(alias)" in out


def test_route_impossible_plan_exits_3(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    status, out, err = run(
        capsys, "route", "--policy", policy, "--prompt-tokens", "100", "--budget-usd", "0.00001"
    )
    assert (status, out) == (3, "")
    assert "the cheapest plan (small, 0 rounds) costs 0.00005 USD" in err
    for argv in (["--task", "astrology"], ["--model", "gpt-5"], ["--max-rounds", "x"]):
        status, _, err = run(capsys, "route", "--policy", policy, *argv)
        assert status == 3
        assert err


def test_route_on_a_bad_policy_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCRIPTED.replace("version: 1", "version: 1\nbogus: 1"))
    status, _, err = run(capsys, "route", "--policy", str(bad))
    assert status == 2
    assert f"{bad}:2: bogus: unknown key" in err


def test_policy_check(capsys: pytest.CaptureFixture[str], policy: str, tmp_path: Path) -> None:
    assert run(capsys, "policy", "check", policy) == (0, f"{policy}: ok (2 models, 2 tasks)\n", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        SCRIPTED.replace("context_window: 4096", "context_window: big").replace(
            "{task: general}", "{task: chat}"
        )
    )
    status, out, err = run(capsys, "policy", "check", str(bad))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        f"{bad}:12: aliases.gpt-4o.task: unknown task 'chat' (declared tasks: general, coding)",
        f"{bad}:17: models.0.context_window: must be an integer, got 'big'",
    ]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    assert run(capsys, "route")[0] == 2  # --policy is required
    assert run(capsys, "route", "--policy", policy, "--prompt", "x", "--prompt-tokens", "3")[0] == 2
    assert run(capsys, "route", "--policy", policy, "--json", "--explain")[0] == 2
    assert run(capsys, "route", "--policy", policy, "--prompt-tokens", "-1")[0] == 2
    assert run(capsys, "policy")[0] == 2
    assert run(capsys)[0] == 2
    assert run(capsys, "--help")[0] == 0


def test_serve_passes_flags_and_leaves_the_rest_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_serve(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 0

    import proxy.server

    monkeypatch.setattr(proxy.server, "serve", fake_serve)
    assert cli.main(["serve", "--port", "9001", "--queue-size", "4", "--workers", "2"]) == 0
    assert calls == [
        {
            "policy": None,
            "host": None,
            "port": 9001,
            "log_level": None,
            "queue_size": 4,
            "database_url": None,
            "workers": 2,
        }
    ]
    assert (
        cli.main(["serve", "--policy", "p.yaml", "--host", "0.0.0.0", "--log-level", "debug"]) == 0
    )
    assert calls[-1] == {
        "policy": "p.yaml",
        "host": "0.0.0.0",
        "port": None,
        "log_level": "debug",
        "queue_size": None,
        "database_url": None,
        "workers": None,
    }


def test_real_processes() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    module = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "route", "--policy", DEFAULT, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert json.loads(module.stdout)["task"] == "general"
    script = Path(sys.executable).with_name("perfics")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "proxy.cli"]
    checked = subprocess.run(
        [*command, "policy", "check", DEFAULT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout) == (0, f"{DEFAULT}: ok (2 models, 4 tasks)\n")
    impossible = subprocess.run(
        [*command, "route", "--policy", DEFAULT, "--budget-usd", "0.0000001"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert impossible.returncode == 3
    assert "budget" in impossible.stderr


def test_help_lists_every_registered_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for name in cli.SUBCOMMANDS:
        assert f"    {name}" in out


def test_only_the_command_run_is_imported() -> None:
    code = (
        "import sys\n"
        "from proxy.cli import main\n"
        f"status = main(['policy', 'check', {DEFAULT!r}])\n"
        "print(status, sorted(m for m in sys.modules if m.startswith(('proxy.calibrate', "
        "'proxy.server', 'fastapi', 'llama_cpp'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr
