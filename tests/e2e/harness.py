"""Docker plumbing for the image e2e: an engine (started when none runs, stopped
after), a base image (the official one, else a local stand-in), builds through
images/build.sh, and containers that are always removed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".e2e"  # logs and the report (gitignored)
STANDIN_TAG = "lakerag-standin/python:3.11-slim"
PREFIX = f"lakerag-e2e-{os.getpid()}"
IMAGES = ("api", "embeddings", "spark", "airflow")
REPORT: dict = {}  # printed at the end of the session (conftest.py) and written to .e2e/report.json


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def docker_client() -> str:
    """A client that can build with BuildKit: Debian's (no buildx needed), else one with buildx."""
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return shutil.which("docker") or "/usr/bin/docker"


@dataclass
class Docker:
    client: str
    started: subprocess.Popen | None = None  # the dockerd this harness started, if any
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def __call__(self, *args: str, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run([self.client, *args], capture_output=True, text=True, timeout=timeout, check=False,
                                **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def alive(self) -> bool:
        try:
            return self("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def image_exists(self, ref: str) -> bool:
        return self("image", "inspect", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict:
        return json.loads(self("image", "inspect", ref).stdout)[0]

    def run(self, image: str, *args: str, env: dict | None = None, options: tuple[str, ...] = (),
            timeout: float = 900) -> subprocess.CompletedProcess:
        """A one-shot container (--rm) on the host network; returns the finished process."""
        name = f"{PREFIX}-{len(self.containers)}"
        self.containers.append(name)
        env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        return self("run", "--rm", "--name", name, "--network", "host", *env_args, *options, image, *args,
                    check=False, timeout=timeout)

    def start(self, image: str, *args: str, env: dict | None = None, options: tuple[str, ...] = ()) -> str:
        name = f"{PREFIX}-{len(self.containers)}"
        self.containers.append(name)
        env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        self("run", "-d", "--name", name, "--network", "host", *env_args, *options, image, *args)
        return name

    def volume(self, purpose: str) -> str:
        name = f"{PREFIX}-{purpose}"
        self("volume", "create", name)
        self.volumes.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.containers:
            self("rm", "-f", name, check=False)
        for name in self.volumes:
            self("volume", "rm", "-f", name, check=False)
        self.containers.clear()
        self.volumes.clear()


def ensure_engine(log: Path) -> Docker:
    """Use the running Docker engine; else install (Debian's docker.io) and start one."""
    docker = Docker(docker_client())
    if docker.alive():
        return docker
    if not shutil.which("dockerd"):
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # A fresh machine's package lists may be empty or stale: update before installing.
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600, env=apt_env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "docker.io"], check=True, timeout=900, env=apt_env)
        docker = Docker(docker_client())
    handle = log.open("ab")
    docker.started = subprocess.Popen([shutil.which("dockerd") or "/usr/sbin/dockerd"], stdout=handle,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while not docker.alive():
        if docker.started.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"dockerd did not start; see {log}")
        time.sleep(1)
    return docker


def stop_engine(docker: Docker) -> None:
    if docker.started is not None and docker.started.poll() is None:
        docker.started.terminate()
        try:
            docker.started.wait(timeout=60)
        except subprocess.TimeoutExpired:
            docker.started.kill()
            docker.started.wait(timeout=30)


def ensure_base(docker: Docker, wanted: str, log: Path) -> str:
    """``wanted`` when it is local or can be pulled; else the local stand-in (built once, then reused)."""
    if docker.image_exists(wanted):
        return wanted
    if docker("pull", wanted, check=False, timeout=300).returncode == 0:
        return wanted
    print(f"\n{wanted} cannot be pulled here: using the local stand-in {STANDIN_TAG}", file=sys.stderr)
    with log.open("ab") as handle:
        subprocess.run([str(REPO / "images" / "standin-base.sh"), STANDIN_TAG], check=True, stdout=handle,
                       stderr=subprocess.STDOUT, timeout=1200, env={**os.environ, "DOCKER": docker.client})
    return STANDIN_TAG


def build(docker: Docker, images: list[str], env: dict, log: Path, context: Path = REPO) -> float:
    """images/build.sh IMAGES with ``env`` (BASE_IMAGE, IMAGE_TAG, ...); returns the seconds it took."""
    started = time.monotonic()
    with log.open("wb") as handle:
        result = subprocess.run([str(context / "images" / "build.sh"), *images], stdout=handle,
                                stderr=subprocess.STDOUT, timeout=3600, cwd=context, check=False,
                                env={**os.environ, **env, "DOCKER": docker.client, "BUILD_FLAGS": "--progress=plain"})
    if result.returncode != 0:
        raise AssertionError(f"images/build.sh {' '.join(images)} failed; last lines of {log}:\n"
                             + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    return time.monotonic() - started
