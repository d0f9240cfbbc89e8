"""Make sure a Docker engine answers on this machine: install and start it if not.

The build/test machines start without a running dockerd (and CI machines
without Docker at all): Debian's ``docker.io`` is installed with apt and
``dockerd`` started in the background, as nothing else starts it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tfenv.lab.progress import say, step
from tfenv.lab.run import LabError

DOCKERD_LOG = Path("/var/log/tfenv-dockerd.log")


def server_version() -> str | None:
    """The Docker engine's version, or None when no engine answers."""
    if shutil.which("docker") is None:
        return None
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def docker_ready() -> bool:
    return server_version() is not None


def ensure_docker(timeout: float = 90) -> None:
    """Install (apt) and start dockerd unless a Docker engine already answers."""
    if docker_ready():
        return
    if shutil.which("dockerd") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise LabError(
                "No Docker engine here. Install one (Debian/Ubuntu: "
                "sudo apt-get install docker.io) and start it, then retry."
            )
        with step("Installing Docker engine (apt-get install docker.io)"):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "docker.io"],
            ):
                result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if result.returncode != 0:
                    raise LabError(f"{' '.join(cmd)} failed: {result.stderr.strip()[-1500:]}")
    if os.geteuid() != 0:
        raise LabError(
            "dockerd is installed but not running; start it (sudo systemctl "
            "start docker, or sudo dockerd &) and retry."
        )
    with step(f"Starting dockerd (log: {DOCKERD_LOG})"):
        with open(DOCKERD_LOG, "ab") as log:
            subprocess.Popen(
                ["dockerd"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while (version := server_version()) is None:
            if time.monotonic() > deadline:
                tail = DOCKERD_LOG.read_text(errors="replace")[-1500:]
                raise LabError(f"dockerd did not answer within {timeout:.0f}s. Its log:\n{tail}")
            time.sleep(0.5)
    say(f"    Docker engine {version} is up")
