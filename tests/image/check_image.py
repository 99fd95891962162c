"""``make image-test``: build the Dockerfile with podman and start the image the way its
configuration says, then check what a user relies on. Needs root (podman, debootstrap, mount,
chroot); every step that cannot run fails with its reason, nothing is skipped.

1. **Base.** ``python:3.11-slim`` cannot be pulled without the internet, so when no image of
   that name exists an equivalent is made: ``debootstrap --variant=minbase bookworm`` from the
   mirror this machine's apt uses, plus python3, venv, pip and ca-certificates, imported as
   ``docker.io/library/python:3.11-slim``. The Dockerfile builds against it unchanged.
2. **Build.** ``podman build --isolation chroot --pull=never --format docker`` (the OCI format
   drops ``HEALTHCHECK``), the host's CA certificates mounted for the build only.
3. **Start, without an OCI runtime** (this machine kind refuses ``podman run``: crun cannot
   set RLIMIT_NPROC). In a private mount and network namespace (the image's port 8000 is its
   own; nothing is left mounted on the host): ``podman create`` + ``podman mount`` give the
   image's filesystem, bound read-only as a new root; each declared ``VOLUME`` is a fresh
   writable directory seeded from the image, as Docker seeds a new volume; ``proc`` and
   ``/dev`` are mounted. ``CMD`` runs there by ``chroot`` as the image's ``USER`` (and its
   groups), with its ``ENV``, ``WORKDIR`` and ``HOME``, umask 022.
4. **Checks.** ``/healthz``; ``/readyz`` ready with every model of the default policy (the
   Gemma GGUF assembled into its volume); a chat completion through the official OpenAI SDK;
   ``perfics keys create`` in the image writes the store the server reads (the key opens it,
   no key is refused); the ``HEALTHCHECK`` command passes while serving and fails once stopped;
   the process is not root and every file it wrote is in a volume; llama.cpp is compiled for
   any AVX2 CPU, not for the build machine's; SIGTERM stops it within Docker's 10 s grace
   period.

Prints the image size, the time from start to ``/readyz`` and the chat answer.

    python tests/image/check_image.py [--image NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[2]
BASE = "docker.io/library/python:3.11-slim"
BASE_LABEL = "perfics.image-test.base=debootstrap"
BASE_PACKAGES = "python3 python3-venv python3-pip python-is-python3 ca-certificates"
CONTAINER = "perfics-image-test"
GRACE_S = 10.0  # Docker's default stop timeout (the image sets none)
READY_TIMEOUT_S = 300.0
EXPECTED_MODELS = {"smollm2-135m", "gemma3-270m"}  # policies/default.yaml
LLAMA_SYSTEM_INFO = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"


class Failed(Exception):
    """A check or a step that did not work; the message says which and why."""


def run(
    args: Sequence[str | Path], stdin: IO[bytes] | None = None
) -> subprocess.CompletedProcess[str]:
    """``args`` run to completion (``stdin``: what they read, when not nothing); ``Failed``
    with its output when they exit non-zero."""
    result = subprocess.run(
        [str(a) for a in args], stdin=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise Failed(
            f"{' '.join(map(str, args))} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result


def say(text: str) -> None:
    sys.stdout.write(f"image-test: {text}\n")
    sys.stdout.flush()


# 1. Base ------------------------------------------------------------------------------------


def debian_mirror() -> str:
    """The bookworm mirror this machine's apt uses (never a name written here)."""
    targets = run(
        [
            *("apt-get", "indextargets", "--format", "$(REPO_URI)"),
            *("Codename: bookworm", "Origin: Debian", "Identifier: Packages"),
        ]
    ).stdout.split()
    if not targets:
        raise Failed("no Debian bookworm mirror in apt's sources (run apt-get update)")
    return targets[0]


def ensure_base(work: Path) -> str:
    """The base image: an existing one of ``BASE``'s name, or one made with debootstrap."""
    if subprocess.run(["podman", "image", "exists", BASE], check=False).returncode == 0:
        return f"{BASE} (already present)"
    rootfs = work / "base"
    started = time.monotonic()
    run(["debootstrap", "--variant=minbase", "bookworm", rootfs, debian_mirror()])
    install = (
        f"apt-get update -q && apt-get install -y -q --no-install-recommends {BASE_PACKAGES} "
        "&& apt-get clean && rm -rf /var/lib/apt/lists/*"
    )
    run(
        [
            *("chroot", rootfs, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
            *("DEBIAN_FRONTEND=noninteractive", "/bin/sh", "-c", install),
        ]
    )
    (rootfs / "etc" / "resolv.conf").write_text("")  # the host's; a container gets its own
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run(["podman", "import", "--change", f"LABEL {BASE_LABEL}", "-", BASE], stdin=tar.stdout)
    if tar.wait() != 0:
        raise Failed("tar of the debootstrap root failed")
    shutil.rmtree(rootfs)
    return f"{BASE} made with debootstrap in {time.monotonic() - started:.0f} s"


# 2. Build -----------------------------------------------------------------------------------


def build(image: str, log: Path) -> float:
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            [
                *("podman", "build", "--isolation", "chroot", "--pull=never", "--format", "docker"),
                *("-v", "/etc/ssl/certs:/etc/ssl/certs:ro", "-t", image, str(ROOT)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise Failed(f"podman build exited {result.returncode}; its log {log} ends:\n{tail}")
    return time.monotonic() - started


# 3. Start -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """What ``podman image inspect`` says about running the image."""

    user: str
    env: dict[str, str]
    workdir: str
    command: list[str]
    volumes: list[str]
    healthcheck: dict[str, object]
    size: int

    @classmethod
    def inspect(cls, image: str) -> ImageConfig:
        (found,) = json.loads(run(["podman", "image", "inspect", image]).stdout)
        config = found["Config"]
        env = dict(item.split("=", 1) for item in config.get("Env") or [])
        return cls(
            user=config.get("User") or "0",
            env=env,
            workdir=config.get("WorkingDir") or "/",
            command=(config.get("Entrypoint") or []) + (config.get("Cmd") or []),
            volumes=sorted(config.get("Volumes") or {}),
            healthcheck=found.get("Healthcheck") or config.get("Healthcheck") or {},
            size=int(found["Size"]),
        )


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def identity(rootfs: Path, user: str) -> Identity:
    """``USER`` as Docker resolves it against the image's /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")
    passwd = [line.split(":") for line in (rootfs / "etc/passwd").read_text().splitlines()]
    groups = [line.split(":") for line in (rootfs / "etc/group").read_text().splitlines()]
    entry = next((e for e in passwd if name in (e[0], e[2])), None)
    if entry is None and not name.isdigit():
        raise Failed(f"USER {user}: no such user in the image")
    uid = int(entry[2]) if entry else int(name)
    gid = int(entry[3]) if entry else 0
    if group:
        found = next((g for g in groups if group in (g[0], g[2])), None)
        gid = int(found[2]) if found else int(group)
    login = entry[0] if entry else ""
    extra = tuple(int(g[2]) for g in groups if login and login in g[3].split(","))
    return Identity(uid, gid, (gid, *extra), entry[5] if entry else "/")


@dataclass
class Container:
    """The image's filesystem as a read-only root with its volumes writable."""

    root: Path
    volumes: dict[str, Path]
    config: ImageConfig
    user: Identity

    def env(self) -> dict[str, str]:
        return {"HOSTNAME": CONTAINER, "HOME": self.user.home, **self.config.env}

    def enter(self) -> None:
        """``preexec_fn``: into the root, as the image's user, in its working directory."""
        os.chroot(self.root)
        os.chdir(self.config.workdir)
        os.setgroups(list(self.user.groups))
        os.setgid(self.user.gid)
        os.setuid(self.user.uid)
        os.umask(0o022)

    def popen(self, command: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                list(command),
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=self.enter,
                start_new_session=True,
            )

    def run(self, command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            preexec_fn=self.enter,
        )


@contextmanager
def started_filesystem(image: str, work: Path) -> Iterator[Container]:
    subprocess.run(["podman", "rm", "--force", CONTAINER], capture_output=True, check=False)
    run(["podman", "create", "--name", CONTAINER, image])
    try:
        rootfs = Path(run(["podman", "mount", CONTAINER]).stdout.strip())
        config = ImageConfig.inspect(image)
        root = work / "root"
        root.mkdir()
        run(["mount", "--bind", rootfs, root])
        run(["mount", "-o", "remount,bind,ro", root])
        volumes: dict[str, Path] = {}
        for target in config.volumes:
            inside = rootfs / target.lstrip("/")
            volume = work / "volumes" / target.strip("/").replace("/", "_")
            shutil.copytree(inside, volume, symlinks=True)  # Docker seeds a new volume
            stat = inside.stat()
            os.chown(volume, stat.st_uid, stat.st_gid)
            volume.chmod(stat.st_mode & 0o7777)
            run(["mount", "--bind", volume, root / target.lstrip("/")])
            volumes[target] = volume
        run(["mount", "-t", "proc", "proc", root / "proc"])
        run(["mount", "--rbind", "/dev", root / "dev"])
        yield Container(root, volumes, config, identity(rootfs, config.user))
    finally:
        subprocess.run(["umount", "--recursive", str(work / "root")], check=False)
        subprocess.run(["podman", "umount", CONTAINER], capture_output=True, check=False)
        subprocess.run(["podman", "rm", "--force", CONTAINER], capture_output=True, check=False)
        shutil.rmtree(work / "volumes", ignore_errors=True)  # the model copy: 250 MB


# 4. Checks ----------------------------------------------------------------------------------


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float, server: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Failed(f"the server exited ({server.returncode}) before {what}")
        if probe():
            return
        time.sleep(0.1)
    raise Failed(f"no {what} within {timeout:.0f} s")


def answers(url: str, status: int, headers: Mapping[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=2, headers=headers).status_code == status
    except httpx.HTTPError:
        return False


def check(container: Container, work: Path) -> dict[str, str]:
    from openai import OpenAI

    config, log = container.config, work / "server.log"
    base = f"http://127.0.0.1:{config.env.get('PERFICS_PORT', '8000')}"
    report: dict[str, str] = {}
    started = time.monotonic()
    server = container.popen(config.command, log)
    try:
        wait_for("/readyz 200", lambda: answers(f"{base}/readyz", 200), READY_TIMEOUT_S, server)
        report["start-up to /readyz"] = f"{time.monotonic() - started:.1f} s"
        if httpx.get(f"{base}/healthz").json() != {"status": "ok"}:
            raise Failed("/healthz does not answer {'status': 'ok'}")
        ready = set(httpx.get(f"{base}/readyz").json().get("models_ready", []))
        if not ready >= EXPECTED_MODELS:
            raise Failed(f"models ready {sorted(ready)}, expected {sorted(EXPECTED_MODELS)}")
        say(f"ok  /healthz, /readyz ready with {', '.join(sorted(ready))}")

        uid = _status_field(server.pid, "Uid")
        if uid[0] == "0" or uid[0] != str(container.user.uid):
            raise Failed(f"the server runs as uid {uid[0]}, the image says {config.user}")
        say(f"ok  runs as uid {uid[0]} (USER {config.user})")

        client = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": "Name one colour of the sky."}],
            max_tokens=32,
            extra_body={"perfics": {"max_rounds": 0}},
        )
        reply = raw.parse()
        answer = reply.choices[0].message.content or ""
        if not answer.strip():
            raise Failed("the chat completion answered nothing")
        report["chat answer"] = f"{raw.headers.get('x-perfics-model')}: {answer.strip()!r}"
        say(f"ok  chat completion through the OpenAI SDK ({report['chat answer']})")

        made = container.run(["perfics", "keys", "create", "--name", "image-test"], timeout=60)
        secret = made.stdout.strip()
        if made.returncode != 0 or not secret:
            raise Failed(f"perfics keys create exited {made.returncode}: {made.stderr}")
        wait_for("401 without a key", lambda: answers(f"{base}/v1/models", 401), 5, server)
        if not answers(f"{base}/v1/models", 200, headers={"Authorization": f"Bearer {secret}"}):
            raise Failed("the key perfics keys create made does not open /v1/models")
        say("ok  perfics keys create in the image: its key opens the server, no key is refused")

        probe = healthcheck(container)
        if probe.returncode != 0:
            raise Failed(f"HEALTHCHECK failed ({probe.returncode}): {probe.stderr}")
        say(f"ok  HEALTHCHECK {container.config.healthcheck['Test']}")

        # llama.cpp's -march=native would use this machine's AVX-512 and die elsewhere.
        probe = container.run(["python", "-c", LLAMA_SYSTEM_INFO], timeout=60)
        if probe.returncode != 0 or "AVX2 = 1" not in probe.stdout or "AVX512 = 1" in probe.stdout:
            raise Failed(f"llama.cpp is not built for any AVX2 CPU: {probe.stdout}{probe.stderr}")
        say(f"ok  llama.cpp built for AVX2, not this machine: {probe.stdout.strip()}")

        denied = container.run(["/bin/sh", "-c", "echo x > /perfics-probe"], timeout=10)
        if denied.returncode == 0:
            raise Failed("the root filesystem is writable: this harness is broken")
        written = sorted(
            str(p.relative_to(v)) for v in container.volumes.values() for p in v.rglob("*")
        )
        if not any(name.endswith("perfics.db") for name in written):
            raise Failed(f"no SQLite store in the volumes: {written}")
        if not any(name.endswith(".gguf") for name in written):
            raise Failed(f"no assembled GGUF in the volumes: {written}")
        say(f"ok  read-only root; written to the volumes: {', '.join(written)}")

        stopping = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        try:
            code = server.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            raise Failed(f"SIGTERM did not stop the server within {GRACE_S:.0f} s") from None
        # uvicorn re-raises the signal once its shutdown is done: killed by SIGTERM, as
        # Docker and Kubernetes expect (exit status 143), after the lifespan's shutdown
        # (ledger rows written, leases given back).
        if code not in (0, -signal.SIGTERM):
            raise Failed(f"the server exited {code} on SIGTERM")
        if "Application shutdown complete" not in log.read_text(errors="replace"):
            raise Failed("the server stopped on SIGTERM without its shutdown")
        report["stop on SIGTERM"] = f"{time.monotonic() - stopping:.1f} s, status {code}"
        say(f"ok  SIGTERM: shut down in {report['stop on SIGTERM']} (grace {GRACE_S:.0f} s)")
        if healthcheck(container).returncode == 0:
            raise Failed("HEALTHCHECK passes with the server stopped")
        say("ok  HEALTHCHECK fails once the server is stopped")
    except Exception:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        say(f"the server's log ({log}) ends:\n{tail}")
        raise
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    return report


def healthcheck(container: Container) -> subprocess.CompletedProcess[str]:
    declared = container.config.healthcheck.get("Test")
    test = [str(part) for part in declared] if isinstance(declared, list) else []
    if not test or test[0] not in ("CMD", "CMD-SHELL"):
        raise Failed(f"the image has no HEALTHCHECK command: {test}")
    command = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    nanoseconds = container.config.healthcheck.get("Timeout")
    timeout = (nanoseconds if isinstance(nanoseconds, int) and nanoseconds else 30e9) / 1e9
    return container.run(command, timeout=timeout)


def _status_field(pid: int, field: str) -> list[str]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return line.split()[1:]
    raise Failed(f"no {field} for pid {pid}")


# Main ---------------------------------------------------------------------------------------


def start_and_check(image: str, work: Path) -> int:
    """The start phase, inside ``unshare --mount --net``: loopback up, the image started."""
    run(["ip", "link", "set", "lo", "up"])
    with started_filesystem(image, work) as container:
        report = check(container, work)
    say(f"image size {container.config.size / 1e6:.0f} MB")
    for name, value in report.items():
        say(f"{name}: {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="localhost/perfics:image-test")
    parser.add_argument("--start-in", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.start_in is not None:
            return start_and_check(args.image, args.start_in)
        if os.geteuid() != 0:
            raise Failed("needs root: podman build, debootstrap, mount and chroot")
        missing = [c for c in ("podman", "debootstrap", "unshare", "ip") if not shutil.which(c)]
        if missing:
            raise Failed(f"not installed: {', '.join(missing)} (make image-test installs them)")
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="perfics-image-test-"))
        say(f"work directory {work}")
        say(f"base: {ensure_base(work)}")
        say(f"built {args.image} in {build(args.image, work / 'build.log'):.0f} s")
        code = subprocess.run(
            [
                *("unshare", "--mount", "--net", sys.executable, __file__),
                *("--image", args.image, "--start-in", str(work)),
            ],
            check=False,
        ).returncode
        if code != 0:
            return code
        say(f"passed in {time.monotonic() - started:.0f} s")
        return 0
    except Failed as exc:
        say(f"FAILED: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
