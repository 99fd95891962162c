"""Operating the service: settings from flags and environment, JSON logs that never carry
prompt or answer text, SIGHUP reload of a real process, and a lint of the Dockerfile."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from proxy.settings import Settings
from tests.conftest import POLICIES, ROOT, ServerProcess

SECRET = "zebra-umbrella-4417"


def test_settings_flags_over_environment_over_defaults() -> None:
    assert Settings.from_env({}).host == "127.0.0.1"
    env = {"PERFICS_PORT": "9001", "PERFICS_QUEUE_SIZE": "3", "PERFICS_POLICY": "p.yaml"}
    settings = Settings.from_env(env, port=9002, host=None)
    assert (settings.port, settings.queue_size, settings.policy, settings.host) == (
        9002,
        3,
        "p.yaml",
        "127.0.0.1",
    )
    with pytest.raises(ValueError, match="PERFICS_PORT"):
        Settings.from_env({"PERFICS_PORT": "eighty"})


@pytest.mark.model
def test_logs_are_json_lines_with_request_facts_and_no_text(tmp_path: Path) -> None:
    server = ServerProcess(POLICIES / "smollm2.yaml", env={"PERFICS_LOG_LEVEL": "info"})
    try:
        response = httpx.post(
            f"{server.base_url}/v1/chat/completions",
            json={
                "model": "auto",
                "max_tokens": 8,
                "temperature": 0,
                "messages": [{"role": "user", "content": f"Repeat after me: {SECRET}"}],
            },
            timeout=60,
        )
        assert response.status_code == 200
        answer = response.json()["choices"][0]["message"]["content"]
        request_id = response.headers["x-request-id"]
    finally:
        server.stop()
    lines = [line for line in server.stderr_path.read_text().splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    done = [e for e in events if e.get("event") == "request.done"]
    assert len(done) == 1
    assert done[0]["request_id"] == request_id
    assert done[0]["model"] == "smollm2-135m"
    assert done[0]["prompt_tokens"] > 0
    assert done[0]["completion_tokens"] > 0
    assert "latency_ms" in done[0]
    assert "cost_usd" in done[0]
    log_text = server.stderr_path.read_text()
    assert SECRET not in log_text
    if len(answer.strip()) > 6:
        assert answer.strip() not in log_text


@pytest.mark.model
def test_sighup_reloads_and_a_bad_file_keeps_the_old_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(POLICIES / "smollm2.yaml", policy)
    server = ServerProcess(policy)
    try:

        def rounds_planned() -> str:
            r = httpx.post(
                f"{server.base_url}/v1/chat/completions",
                json={
                    "model": "gpt-4o-refined",
                    "max_tokens": 1,
                    "messages": [{"role": "user", "content": "hi"}],
                    "perfics": {"max_rounds": 0},
                },
                timeout=60,
            )
            return r.headers["x-perfics-rounds-planned"] + "/" + r.headers["x-perfics-score"]

        before = rounds_planned()
        text = policy.read_text()
        policy.write_text(text.replace("[3.0, 3.4, 3.6]", "[4.0, 3.4, 3.6]"))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while rounds_planned() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        after = rounds_planned()
        assert after != before

        policy.write_text("version: 1\nmodels: [")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        ready: dict[str, object] = {}
        while time.monotonic() < deadline:
            ready = httpx.get(f"{server.base_url}/readyz").json()
            if ready["last_reload_error"]:
                break
            time.sleep(0.1)
        assert "policy.yaml:" in str(ready["last_reload_error"])
        assert ready["status"] == "ready"
        assert rounds_planned() == after
    finally:
        server.stop()


def test_admin_reload_is_loopback_only_without_a_key() -> None:
    from starlette.testclient import TestClient

    from proxy.app import create_app
    from proxy.backends.scripted import ScriptedBackend

    app = create_app(
        Settings(policy=str(POLICIES / "scripted.yaml")),
        backends={"alpha": ScriptedBackend("alpha"), "beta": ScriptedBackend("beta")},
    )
    with TestClient(app, client=("203.0.113.9", 5000)) as remote:
        refused = remote.post("/admin/reload")
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "permission_error"
    keyed = create_app(
        Settings(policy=str(POLICIES / "scripted.yaml"), admin_key="s3cret"),
        backends={"alpha": ScriptedBackend("alpha"), "beta": ScriptedBackend("beta")},
    )
    with TestClient(keyed, client=("203.0.113.9", 5000)) as remote:
        assert remote.post("/admin/reload").status_code == 401
        assert (
            remote.post("/admin/reload", headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )


def test_api_key_is_required_when_configured() -> None:
    from starlette.testclient import TestClient

    from proxy.app import create_app
    from proxy.backends.scripted import ScriptedBackend

    app = create_app(
        Settings(policy=str(POLICIES / "scripted.yaml"), api_key="k1"),
        backends={"alpha": ScriptedBackend("alpha", default="ok"), "beta": ScriptedBackend("beta")},
    )
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "perfics": {"max_rounds": 0},
    }
    with TestClient(app) as client:
        denied = client.post("/v1/chat/completions", json=body)
        assert denied.status_code == 401
        assert denied.json()["error"]["type"] == "authentication_error"
        ok = client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer k1"})
        assert ok.status_code == 200


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(ROOT / ".venv/bin/hadolint"))
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile
    assert "/healthz" in dockerfile
    assert "\nUSER " in dockerfile
    assert "perfics" in dockerfile.split("CMD")[-1]


def test_keys_named_by_the_policy_are_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    from proxy.app import create_app
    from proxy.backends.scripted import ScriptedBackend

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        (POLICIES / "scripted.yaml").read_text()
        + "server: {api_key_env: TEST_PERFICS_CLIENT_KEY}\n"
        + "admin: {api_key_env: TEST_PERFICS_ADMIN_KEY}\n"
    )
    monkeypatch.setenv("TEST_PERFICS_CLIENT_KEY", "client-key")
    monkeypatch.setenv("TEST_PERFICS_ADMIN_KEY", "admin-key")
    app = create_app(
        Settings(policy=str(policy)),
        backends={"alpha": ScriptedBackend("alpha"), "beta": ScriptedBackend("beta")},
    )
    with TestClient(app, client=("203.0.113.9", 5000)) as client:
        assert client.get("/v1/models").status_code == 401
        ok = client.get("/v1/models", headers={"Authorization": "Bearer client-key"})
        assert ok.status_code == 200
        assert client.post("/admin/reload").status_code == 401
        reload = client.post("/admin/reload", headers={"Authorization": "Bearer admin-key"})
        assert reload.status_code == 200
