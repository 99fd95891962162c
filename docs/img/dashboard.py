"""Make docs/img/dashboard.png, the README's picture of ``/dashboard``: a real ``perfics
serve`` on the operations tests' policy (three models in front of the stub upstream, one of
them down, so fallbacks show), two keys with budgets in a scratch SQLite store, a few requests
on each, and the page in headless Debian Chromium through Playwright (as ``make test`` has them).

    .venv/bin/python docs/img/dashboard.py [--out docs/img/dashboard.png]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.backends.conftest import Stub  # noqa: E402
from tests.conftest import ServerProcess  # noqa: E402
from tests.ops.conftest import write_policy  # noqa: E402
from tests.ops.test_dashboard import chromium  # noqa: E402

ASKS = [
    ("Explain tides.", None),
    ("Write python code that sorts a list.", None),
    ("Name a colour.", "quick"),
    ("Why is the sky blue?", None),
]


def make_key(database: str, *args: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "keys", "create", *args, "--database", database],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard.png")
    args = parser.parse_args()
    stub = Stub()
    with tempfile.TemporaryDirectory(prefix="perfics-dashboard-") as scratch:
        database = f"sqlite:///{scratch}/keys.db"
        keys = {
            "research": make_key(database, "--name", "research", "--budget-usd", "0.05"),
            "support": make_key(
                database, "--name", "support", "--budget-usd", "0.02", "--rpm", "600"
            ),
        }
        server = ServerProcess(
            write_policy(Path(scratch), stub), {"PERFICS_DATABASE_URL": database}
        )
        try:
            chat = f"{server.base_url}/v1/chat/completions"
            for name, secret in keys.items():
                for content, task in ASKS * (3 if name == "research" else 1):
                    headers = {"authorization": f"Bearer {secret}"}
                    if task:
                        headers["x-perfics-task"] = task
                    body = {"model": "auto", "messages": [{"role": "user", "content": content}]}
                    reply = httpx.post(chat, json=body, headers=headers, timeout=30)
                    reply.raise_for_status()
            screenshot(f"{server.base_url}/dashboard", args.out)
        finally:
            server.stop()
            stub.stop()
    print(args.out)
    return 0


def screenshot(url: str, out: Path) -> None:
    with chromium() as context:
        page = context.new_page()
        page.wait_for_timeout(1500)  # the ledger's batch (every second) reaches the store
        page.goto(url, wait_until="networkidle")
        page.screenshot(path=str(out), full_page=True)


if __name__ == "__main__":
    sys.exit(main())
