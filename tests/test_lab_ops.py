"""tfenv's operations run by pyinfra against real lab hosts: changes, then none.

Image: no dev container; the small Debian check image for ``--gpus`` (the subject is
the GPU base's operations).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lab_fixtures import ok_on_host, pyinfra_on_lab

from tfenv.images.lock import read_lock
from tfenv.lab.fleet import Lab

pytestmark = pytest.mark.lab


def deploy(lab: Lab, host: str, script: str, *flags: str, succeed: bool = True) -> str:
    return pyinfra_on_lab(lab, *flags, "--limit", host, script, succeed=succeed)


def test_signed_repository_replaces_a_stale_list_then_changes_nothing(
    lab_of, test_lab: Lab
) -> None:
    state = lab_of(2)
    host = state.hosts[1]
    stale = "deb https://nvidia.github.io/nvidia-docker/debian10/$(ARCH) /"
    ok_on_host(state, 1, f"echo '{stale}' | sudo tee /etc/apt/sources.list.d/nvidia-docker.list")
    first = deploy(test_lab, host.name, "tests/lab_deploys/toolkit_repository.py")
    assert f"[{host.name}] Success" in first
    listing = ok_on_host(
        state, 1, "ls /etc/apt/sources.list.d; apt-cache policy nvidia-container-toolkit"
    )
    assert "nvidia-docker.list" not in listing
    assert "nvidia-container-toolkit.list" in listing
    assert "1.17.3-1" in listing  # apt-get update ran: the packages are known in the same run
    second = deploy(test_lab, host.name, "tests/lab_deploys/toolkit_repository.py")
    assert f"[{host.name}] No changes" in second


def test_container_toolkit_keeps_the_users_daemon_json_then_changes_nothing(
    lab_of, test_lab: Lab
) -> None:
    state = lab_of(2)
    host = state.hosts[1]

    def on(script: str, stdin: str | None = None) -> str:
        return ok_on_host(state, 1, script, stdin)

    # Docker as the distribution ships it (the Docker engine operation is still to come),
    # with keys the user set by hand.
    on("sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive "
       "apt-get install -y -q docker.io >/dev/null")  # fmt: skip
    user = {"log-driver": "local", "insecure-registries": ["registry.internal:5000"],
            "data-root": "/var/lib/docker", "bip": "172.31.250.1/24"}  # fmt: skip
    on("sudo tee /etc/docker/daemon.json >/dev/null && sudo systemctl restart docker",
       json.dumps(user, indent=2))  # fmt: skip

    first = deploy(test_lab, host.name, "tests/lab_deploys/container_toolkit.py")
    assert f"[{host.name}] Success" in first
    daemon = json.loads(on("cat /etc/docker/daemon.json"))
    assert daemon == {
        **user,
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
    }
    assert "nvidia" in json.loads(on("sudo docker info --format '{{json .Runtimes}}'"))
    held = on("apt-mark showhold").split()
    assert {"nvidia-container-toolkit", "libnvidia-container1"} <= set(held)
    assert on("nvidia-ctk --version").startswith("NVIDIA Container Toolkit CLI version 1.17.3")

    second = deploy(test_lab, host.name, "tests/lab_deploys/container_toolkit.py")
    assert f"[{host.name}] No changes" in second


def lock_digest(state, reference: str = "tfenv/debian:bookworm") -> str:
    lock, _ = read_lock(Path(state.lock))
    return lock.images[f"{state.registry['host']}/{reference}"].digest


def totals(output: str) -> dict[str, str]:
    """pyinfra's 'Grand total' row: Hosts, Success, Error, No Change."""
    row = [line for line in output.splitlines() if line.strip().startswith("Grand total")][-1]
    hosts, success, error, no_change = row.split()[-4:]
    return {"hosts": hosts, "success": success, "error": error, "no_change": no_change}


def test_gpu_base_takes_a_fresh_host_to_working_gpus_then_changes_nothing(
    lab_of, test_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = lab_of(4, images=True)
    host = state.hosts[3]

    def on(script: str, stdin: str | None = None) -> str:
        return ok_on_host(state, 3, script, stdin, timeout=120)

    # A daemon.json the user wrote before tfenv came: its keys must survive.
    user = {"log-driver": "local", "insecure-registries": ["registry.internal:5000"],
            "bip": "172.31.251.1/24"}  # fmt: skip
    on("sudo mkdir -p /etc/docker && sudo tee /etc/docker/daemon.json >/dev/null", json.dumps(user))

    first = deploy(test_lab, host.name, "deploys/gpu_base.py", "-v")  # -v: noop reasons
    assert totals(first)["error"] == "-", first
    assert "Reboot for the NVIDIA driver" in first
    smi = "nvidia-smi --query-gpu=driver_version,persistence_mode --format=csv,noheader"
    assert on(smi).splitlines() == ["550.127.05, Enabled"] * state.gpus_per_host
    daemon = json.loads(on("cat /etc/docker/daemon.json"))
    assert daemon == {
        **user,
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
    }
    assert "nvidia" in json.loads(on("sudo docker info --format '{{json .Runtimes}}'"))
    # The proof ran: the check image came by digest, through tfenv's root-only login.
    assert f"[{host.name}] noop: {state.gpus_per_host} GPU(s) visible inside a container" in first
    assert on("sudo stat -c '%a %U' /etc/tfenv/docker /etc/tfenv/docker/config.json").split() == [
        "700", "root", "600", "root"
    ]  # fmt: skip
    assert on("sudo test -e /root/.docker/config.json || echo none").strip() == "none"
    digests = on("sudo docker image ls --digests --format '{{.Repository}}@{{.Digest}}'")
    assert digests.split() == [f"{state.registry['host']}/tfenv/debian@" + lock_digest(state)]

    again = deploy(test_lab, host.name, "deploys/gpu_base.py")
    assert totals(again)["success"] == "-", again  # every operation: no change
    assert f"[{host.name}] No changes" in again

    uptime = int(on("cut -d. -f1 /proc/uptime"))
    monkeypatch.setenv("TFENV_TEST_REBOOT", "if-needed")
    monkeypatch.setenv("TFENV_TEST_DRIVER_VERSION", "550.144.03")
    upgraded = deploy(test_lab, host.name, "tests/lab_deploys/gpu_base_with.py")
    assert totals(upgraded)["error"] == "-", upgraded
    assert int(on("cut -d. -f1 /proc/uptime")) < uptime + 5  # it rebooted for the new module
    assert on(smi).splitlines() == ["550.144.03, Enabled"] * state.gpus_per_host

    # reboot: never. Going back to 550.127.05 installs it but may not reboot:
    # the host fails as pending reboot, and no GPU container runs on it.
    uptime = int(on("cut -d. -f1 /proc/uptime"))
    monkeypatch.setenv("TFENV_TEST_REBOOT", "never")
    monkeypatch.setenv("TFENV_TEST_DRIVER_VERSION", "550.127.05")
    pending = deploy(test_lab, host.name, "tests/lab_deploys/gpu_base_with.py", succeed=False)
    assert f"[{host.name}] Error: pending reboot: driver/library mismatch" in pending, pending
    assert "pending reboot: driver/library mismatch" in pending, pending
    assert "reboot is 'never' in the data" in pending
    assert "GPU(s) visible inside a container" not in pending  # stopped before the check
    assert int(on("cut -d. -f1 /proc/uptime")) >= uptime  # not rebooted
    assert "Driver/library version mismatch" in on("nvidia-smi -L 2>&1 || true")
