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


# Where Debian puts administrators' tools, which a user's PATH may lack.
SYSTEM_BIN = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin")


def find_command(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SYSTEM_BIN))


def ensure_command(name: str, package: str, what: str) -> str:
    """The path of ``name``, installing Debian's ``package`` with apt when it is missing
    (as root on Debian/Ubuntu; elsewhere an error that says what to install)."""
    found = find_command(name)
    if found:
        return found
    if os.geteuid() != 0 or find_command("apt-get") is None:
        raise LabError(
            f"{name} is missing ({what}). Install it (Debian/Ubuntu: "
            f"sudo apt-get install {package}), then retry."
        )
    with step(f"Installing {what} (apt-get install {package})"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
            result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if result.returncode != 0:
                raise LabError(
                    f"{' '.join(cmd)} failed: {result.stderr.strip()[-1500:]}\n"
                    "Check that apt reaches Debian's mirror here, then retry."
                )
    found = find_command(name)
    if found is None:
        raise LabError(f"apt-get installed {package}, but {name} is still not found")
    return found


def ensure_docker(timeout: float = 90) -> None:
    """Install (apt) and start dockerd unless a Docker engine already answers."""
    if docker_ready():
        return
    if find_command("dockerd") is None:
        ensure_command("dockerd", "docker.io", "the Docker engine")
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
