"""The Docker engine for the compose test (tests/compose/test_compose_stack.py, `make compose-test`).

What it takes on a machine of this project's kind (a container, root, Debian bookworm, PyPI and Debian's mirror
reachable, no image registry):

- Debian's packages ``docker.io`` (dockerd 20.10 + containerd + runc), ``docker-compose`` (1.29, the v1 spelling)
  and ``debootstrap``, installed here when missing (``apt-get update`` + ``apt-get install``);
- ``dockerd --bridge=none --iptables=false --ip-masq=false`` started by us as root (every container then runs on
  the host network); storage driver overlay2, or ``vfs`` when overlay2 cannot start (FORGE_DOCKER_STORAGE_DRIVER
  forces one);
- the base image from ``docker/base-image.sh`` (debootstrap minbase + ``docker import``).

Anything missing that cannot be had (not root, no apt, the daemon does not start) is a ``EngineUnavailable`` with
the reason, which the test turns into a skip that says exactly what failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import REPO_ROOT

PACKAGES = ("docker.io", "docker-compose", "debootstrap")
DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip-masq=false")


class EngineUnavailable(RuntimeError):
    """The Docker engine cannot be had here; the message says what failed."""


def run(cmd: list[str], *, timeout: float = 600, check: bool = True, env: dict | None = None,
        cwd: Path = REPO_ROOT, input_text: str | None = None, merge: bool = True) -> subprocess.CompletedProcess:
    """``cmd`` with its output captured: stderr merged into stdout, or apart (``merge=False``: stdout is data)."""
    out = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout, text=True,
                         input=input_text, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT if merge else subprocess.PIPE)
    if check and out.returncode != 0:
        tail = "\n".join(((out.stdout or "") + (out.stderr or "")).splitlines()[-40:])
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}:\n{tail}")
    return out


def python() -> Path:
    """The project's interpreter (PyYAML for docker/host-network-config)."""
    import sys

    return Path(sys.executable)


def _have(binary: str) -> bool:
    return shutil.which(binary) is not None


def ensure_packages(log) -> dict[str, float]:
    """Install docker.io, docker-compose and debootstrap from Debian when a binary is missing. {what: seconds}."""
    missing = [p for p, b in (("docker.io", "dockerd"), ("debootstrap", "debootstrap")) if not _have(b)]
    if not _have("docker-compose") and compose_v2() is None:
        missing.append("docker-compose")
    if not missing:
        return {}
    if os.geteuid() != 0:
        raise EngineUnavailable(f"{', '.join(missing)} not installed and not root (apt-get install needs root)")
    if not _have("apt-get"):
        raise EngineUnavailable(f"{', '.join(missing)} not installed and no apt-get on this machine")
    t0 = time.monotonic()
    log(f"installing {' '.join(missing)} from Debian (apt-get update + install) ...")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-q"], timeout=600, env=env)
        run(["apt-get", "install", "-y", "-q", *missing], timeout=1200, env=env)
    except RuntimeError as err:
        raise EngineUnavailable(f"apt-get could not install {' '.join(missing)}: {err}") from None
    return {"apt-get install " + " ".join(missing): round(time.monotonic() - t0, 1)}


def compose_v2() -> list[str] | None:
    """``docker compose`` when the v2 plugin answers."""
    if not _have("docker"):
        return None
    try:
        out = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return ["docker", "compose"] if out.returncode == 0 and "version" in out.stdout.lower() else None


def compose_command() -> list[str]:
    """The Compose CLI to use: FORGE_COMPOSE (e.g. "docker-compose"), else ``docker compose`` (v2 plugin) when it
    answers, else Debian's ``docker-compose`` (v1). Both read the same files (docs/operations.md)."""
    forced = os.environ.get("FORGE_COMPOSE", "").split()
    if forced:
        return forced
    v2 = compose_v2()
    if v2:
        return v2
    if _have("docker-compose"):
        return ["docker-compose"]
    raise EngineUnavailable("neither `docker compose` (v2 plugin) nor `docker-compose` (v1) is installed")


def docker_ready(timeout: float = 10) -> bool:
    try:
        out = subprocess.run(["docker", "info", "--format", "{{json .ServerVersion}}"], capture_output=True,
                             text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() not in ("", "null")


@dataclass
class Daemon:
    """A dockerd we started (``proc``) or one that was already running (``proc`` None: left alone)."""

    proc: subprocess.Popen | None
    log_path: Path | None
    storage_driver: str
    start_s: float
    version: str = ""
    notes: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _info(field_: str) -> str:
    out = subprocess.run(["docker", "info", "--format", "{{" + field_ + "}}"], capture_output=True, text=True,
                         timeout=30)
    return out.stdout.strip()


def start_daemon(log_dir: Path, log, wait_s: float = 60) -> Daemon:
    """Use a running daemon, else start ``dockerd --bridge=none --iptables=false --ip-masq=false`` (overlay2, then
    vfs). EngineUnavailable with the daemon's last log lines when none starts."""
    if docker_ready():
        log("a Docker daemon is already running: using it (and leaving it running)")
        return Daemon(None, None, _info(".Driver"), 0.0, _info(".ServerVersion"))
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker daemon running, and dockerd needs root to start")
    if not _have("dockerd"):
        raise EngineUnavailable("dockerd is not installed (Debian package docker.io)")
    forced = os.environ.get("FORGE_DOCKER_STORAGE_DRIVER")
    drivers = [forced] if forced else ["", "vfs"]     # "": dockerd's own choice (overlay2 on ext4)
    failures = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for driver in drivers:
        log_path = log_dir / f"dockerd{'-' + driver if driver else ''}.log"
        cmd = ["dockerd", *DOCKERD_FLAGS] + ([f"--storage-driver={driver}"] if driver else [])
        t0 = time.monotonic()
        with log_path.open("ab") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and proc.poll() is None and not docker_ready(5):
            time.sleep(0.5)
        if proc.poll() is None and docker_ready():
            d = Daemon(proc, log_path, _info(".Driver"), round(time.monotonic() - t0, 1), _info(".ServerVersion"))
            log(f"started `{' '.join(cmd)}` (pid {proc.pid}): Docker {d.version}, storage {d.storage_driver}, "
                f"ready in {d.start_s:.1f} s; log {log_path}")
            return d
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        failures.append(f"`{' '.join(cmd)}` (exit {proc.returncode}):\n{tail}")
    raise EngineUnavailable("the Docker daemon did not start:\n" + "\n\n".join(failures))


def build_base_image(image: str, log) -> float:
    """docker/base-image.sh (kept when it exists). Seconds taken."""
    t0 = time.monotonic()
    out = run(["bash", str(REPO_ROOT / "docker" / "base-image.sh"), image], timeout=1200)
    log(out.stdout.strip())
    return round(time.monotonic() - t0, 1)


def pip_find_links() -> list[Path]:
    """The folders pip's find-links points at (PIP_FIND_LINKS, pip config), where a CPU torch wheel may lie."""
    raw = os.environ.get("PIP_FIND_LINKS", "")
    try:
        cfg = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "python"), "-m", "pip", "config", "list"],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        cfg = ""
    for line in cfg.splitlines():
        if "find-links" in line and "=" in line:
            raw += " " + line.split("=", 1)[1].strip().strip("'\"")
    return [Path(p.removeprefix("file://")) for p in raw.split() if p and Path(p.removeprefix("file://")).is_dir()]


def stage_torch_wheel(version: str, log) -> str:
    """Copy the CPU torch wheel from pip's find-links into docker/wheels/ (the Dockerfile installs it instead of
    asking PyTorch's index, which this machine cannot reach). Returns what the build will use."""
    dest = REPO_ROOT / "docker" / "wheels"
    have = sorted(dest.glob(f"torch-{version}*.whl"))
    if have:
        return f"docker/wheels/{have[0].name}"
    for folder in pip_find_links():
        found = sorted(folder.glob(f"torch-{version}+cpu-*.whl"))
        if found:
            shutil.copy2(found[0], dest / found[0].name)
            log(f"staged {found[0]} into docker/wheels/ for the image build")
            return f"docker/wheels/{found[0].name}"
    return "PyTorch's CPU index (no local wheel)"


# -- containers -------------------------------------------------------------------------------------------------
def inspect(container: str) -> dict:
    out = run(["docker", "inspect", container], timeout=60)
    return json.loads(out.stdout)[0]


def image_size_mb(image: str) -> float:
    out = run(["docker", "image", "inspect", "-f", "{{.Size}}", image], timeout=60)
    return round(int(out.stdout.strip()) / 1e6)
