"""The two proxies under test, each started as a real server process in front of the stub.

perfics: ``perfics serve`` with a generated policy: one ``backend: openai`` model at the stub,
the task's ``max_rounds: 0``, so every request makes exactly one upstream call (the proxy's
own overhead, with no refinement). It logs at its default level, ``info`` (two JSON lines per
request), to a file.

LiteLLM: its proxy (``litellm --config``), installed in its own virtual environment
``benchmarks/.venv-litellm`` on first use and never a project dependency, with a generated
config: one ``openai/`` model at the stub, a master key, no database, the local cost map, no
message logging, logs at ERROR.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import venv
from pathlib import Path

from benchmarks.processes import HOST, ROOT, Server, free_port

MODEL = "bench"
MASTER_KEY = "sk-bench-master"
LITELLM_VENV = ROOT / "benchmarks" / ".venv-litellm"
LITELLM_SPEC = "litellm[proxy]==1.110.*"


def perfics_policy(stub_port: int, *, embedded_threads: int | None = None) -> str:
    """The benchmark's policy: the stub behind ``backend: openai`` (or, given
    ``embedded_threads``, the bundled SmolLM2 in-process on that many threads), no refinement
    rounds, the alias ``bench``."""
    if embedded_threads is not None:
        model = (
            "  - id: smollm2-135m\n"
            "    backend: llamacpp\n"
            "    model: bundled:smollm2-135m\n"
            "    context_window: 2048\n"
            f"    options: {{n_threads: {embedded_threads}, n_batch: 512}}\n"
        )
    else:
        model = (
            "  - id: stub\n"
            "    backend: openai\n"
            "    model: stub\n"
            f'    api_base: ["http://{HOST}:{stub_port}/v1"]\n'
            "    context_window: 8192\n"
        )
    return (
        "version: 1\n"
        "default_task: general\n"
        "reference_model: {id: gpt-4o, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10.0}\n"
        "tasks:\n"
        "  general: {max_rounds: 0, answer_tokens: 256}\n"
        f"aliases:\n  {MODEL}: {{task: general}}\n"
        "models:\n"
        f"{model}"
        "    input_usd_per_mtok: 0.1\n"
        "    output_usd_per_mtok: 0.2\n"
        "    quality: {default: [5.0]}\n"
    )


def start_perfics(
    policy_text: str,
    workdir: Path,
    *,
    log_level: str = "info",
    name: str = "perfics",
    env: dict[str, str] | None = None,
) -> Server:
    """``perfics serve`` on the policy; ``env`` adds variables (``PERFICS_METRICS=off``)."""
    policy = workdir / f"perfics-{free_port()}.yaml"
    policy.write_text(policy_text)
    port = free_port()
    args = [sys.executable, "-m", "proxy.cli", "serve", "--policy", str(policy)]
    args += ["--host", HOST, "--port", str(port), "--log-level", log_level]
    return Server(
        name,
        args,
        port=port,
        ready_path="/readyz",
        env={"PERFICS_API_KEY": MASTER_KEY, **(env or {})},
        log=workdir / f"{name}.log",
    )


def litellm_python() -> Path:
    return LITELLM_VENV / "bin" / "python"


def ensure_litellm(log: Path) -> Path:
    """LiteLLM's proxy in ``benchmarks/.venv-litellm``, installed on first use; its ``litellm``
    command. When the registry cannot resolve the ``proxy`` extra as a whole (it pins a
    ``litellm-proxy`` release that is not always published), LiteLLM itself is installed and
    then the extra's other requirements, with the exact pins of LiteLLM's sibling packages
    relaxed."""
    command = LITELLM_VENV / "bin" / "litellm"
    if command.exists() and _proxy_importable():
        return command
    if not litellm_python().exists():
        venv.EnvBuilder(with_pip=True).create(LITELLM_VENV)
    with log.open("ab") as out:
        pip = [str(litellm_python()), "-m", "pip", "install", "--quiet"]
        if subprocess.run([*pip, LITELLM_SPEC], stdout=out, stderr=out).returncode != 0:
            install = functools.partial(subprocess.run, check=True, stdout=out, stderr=out)
            install([*pip, LITELLM_SPEC.replace("[proxy]", "")])
            install([*pip, *_proxy_extra_requirements()])
    if not _proxy_importable():
        raise RuntimeError(f"LiteLLM's proxy does not import in {LITELLM_VENV}; see {log}")
    return command


def _proxy_extra_requirements() -> list[str]:
    script = (
        "import importlib.metadata as m, json\nprint(json.dumps(m.requires('litellm') or []))\n"
    )
    found = subprocess.run(
        [str(litellm_python()), "-c", script], check=True, capture_output=True, text=True
    )
    wanted: list[str] = []
    for requirement in json.loads(found.stdout):
        spec, _, marker = requirement.partition(";")
        if "extra == 'proxy'" not in marker.replace('"', "'"):
            continue
        name = spec.split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip()
        if name == "litellm-proxy":
            continue
        if name.startswith("litellm-"):  # pinned to releases the registry may not have
            spec = name
        condition = marker.replace("extra == 'proxy'", "").replace('extra == "proxy"', "")
        condition = condition.strip().removeprefix("and").removesuffix("and").strip()
        wanted.append(f"{spec.strip()}; {condition}" if condition else spec.strip())
    return wanted


def _proxy_importable() -> bool:
    check = [str(litellm_python()), "-c", "import litellm.proxy.proxy_server"]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(check, capture_output=True, env=env).returncode == 0


def litellm_config(stub_port: int) -> str:
    return json.dumps(
        {
            "model_list": [
                {
                    "model_name": MODEL,
                    "litellm_params": {
                        "model": "openai/stub",
                        "api_base": f"http://{HOST}:{stub_port}/v1",
                        "api_key": "sk-stub",
                    },
                }
            ],
            "general_settings": {"master_key": MASTER_KEY},
            "litellm_settings": {
                "telemetry": False,
                "turn_off_message_logging": True,
                "set_verbose": False,
            },
        },
        indent=2,
    )


def start_litellm(command: Path, stub_port: int, workdir: Path) -> Server:
    config = workdir / "litellm.yaml"  # JSON is YAML
    config.write_text(litellm_config(stub_port))
    port = free_port()
    args = [str(command), "--config", str(config), "--host", HOST, "--port", str(port)]
    args += ["--num_workers", "1"]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_ADMIN_UI": "True",
        "VIRTUAL_ENV": str(LITELLM_VENV),
        "PYTHONDONTWRITEBYTECODE": "",  # its many lazy imports compile once, not every start
    }
    return Server(
        "litellm",
        args,
        port=port,
        ready_path="/health/readiness",
        env=env,
        log=workdir / "litellm.log",
        ready_timeout_s=180,
    )
