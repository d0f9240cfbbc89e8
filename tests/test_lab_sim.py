"""The lab's simulators on real lab hosts: NVIDIA driver and toolkit from a signed
apt repository, reboots through pyinfra, ``docker run --gpus``, and NFS.

Slow by nature (apt installs, Docker inside a lab host, two reboots): each test
does one whole story on its own lab host.

Image: no dev container; the small Debian check image for ``docker run --gpus``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from lab_fixtures import ok_on_host as ok
from lab_fixtures import on_host as on
from lab_fixtures import pyinfra_on_lab

from tfenv.images.lock import read_lock
from tfenv.lab.fleet import Lab, LabState, up
from tfenv.lab.sim.nvidia import gpus_for

pytestmark = pytest.mark.lab
CUDA_LIST = "/etc/apt/sources.list.d/cuda-debian12-x86_64.list"
TOOLKIT_LIST = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
DRIVER_PACKAGES = ("nvidia-driver", "nvidia-kernel-open-dkms", "nvidia-smi", "libnvidia-ml1",
                   "nvidia-persistenced")  # fmt: skip
TOOLKIT_PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base",
                    "libnvidia-container-tools", "libnvidia-container1")  # fmt: skip
APT = "sudo DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0"


def pinned(packages: tuple[str, ...], version: str) -> str:
    return " ".join(f"{name}={version}" for name in packages)


def pyinfra_reboot(lab: Lab, host: str) -> None:
    """pyinfra's own server.reboot against the lab host: it reboots and waits."""
    pyinfra_on_lab(lab, "--limit", host, "server.reboot", "reboot_timeout=120")


def gpu_fact(lab: Lab, host: str) -> dict:
    """tfenv's GpuHost fact read through pyinfra over SSH, as a deploy reads it."""
    text = pyinfra_on_lab(lab, "--limit", host, "fact", "tfenv.facts.gpu.GpuHost", timeout=120)
    start = text.index("{", text.index("Fact data for"))
    return json.JSONDecoder().raw_decode(text[start:])[0][host]


def add_repository(state: LabState, host: int, name: str, list_file: str, keyring: str) -> None:
    repo = state.apt_repositories[name]
    ok(state, host, f"sudo tee {keyring} >/dev/null", Path(repo["key"]).read_bytes())
    line = f"deb [signed-by={keyring}] {repo['url']} /"
    ok(state, host, f"echo '{line}' | sudo tee {list_file}")


def smi(state: LabState, host: int, args: str = "-L") -> subprocess.CompletedProcess:
    return on(state, host, f"nvidia-smi {args}")


QUERY = "--query-gpu=uuid,driver_version,persistence_mode --format=csv,noheader"


def test_driver_from_signed_repo_mismatch_until_reboot(lab_of, test_lab: Lab) -> None:
    state = lab_of(3)
    host, name = 2, state.hosts[2].name
    # A repository signed by a key apt was not given is refused.
    toolkit_key = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
    add_repository(state, host, "nvidia_container_toolkit", TOOLKIT_LIST, toolkit_key)
    ok(state, host, f"echo 'deb [signed-by={toolkit_key}] "
       f"{state.apt_repositories['cuda']['url']} /' | sudo tee {CUDA_LIST}")  # fmt: skip
    refused = on(state, host, f"{APT} update")
    assert "NO_PUBKEY" in refused.stdout + refused.stderr
    add_repository(state, host, "cuda", CUDA_LIST, "/usr/share/keyrings/cuda-archive-keyring.gpg")
    ok(state, host, f"{APT} update")

    ok(state, host, f"{APT} install {pinned(DRIVER_PACKAGES, '550.127.05-1')}")
    fresh = smi(state, host)
    assert fresh.returncode == 9 and "couldn't communicate with the NVIDIA driver" in fresh.stdout

    pyinfra_reboot(test_lab, name)
    uuids = [gpu["uuid"] for gpu in gpus_for(name, state.gpus_per_host)]
    assert smi(state, host, QUERY).stdout.splitlines() == [
        f"{uuid}, 550.127.05, Enabled" for uuid in uuids
    ]
    assert "Open Kernel Module for x86_64  550.127.05  " in ok(
        state, host, "cat /proc/driver/nvidia/version"
    )

    ok(state, host, f"{APT} install {pinned(DRIVER_PACKAGES, '550.144.03-1')}")
    mismatch = smi(state, host)
    observed = gpu_fact(test_lab, name)  # upgraded behind the module's back: not healthy
    assert observed["driver_state"] == "mismatch"
    assert (observed["module_version"], observed["nvml_version"]) == ("550.127.05", "550.144")
    assert mismatch.returncode == 18
    assert mismatch.stdout.splitlines() == [
        "Failed to initialize NVML: Driver/library version mismatch",
        "NVML library version: 550.144",
    ]
    pyinfra_reboot(test_lab, name)
    assert smi(state, host, "--query-gpu=driver_version --format=csv,noheader").stdout.split() == [
        "550.144.03"
    ] * len(uuids)


def test_docker_gpus_needs_the_toolkit_and_then_lists_the_gpus(lab_of, test_lab: Lab) -> None:
    state = lab_of(3, images=True)
    host, name = 2, state.hosts[2].name
    if smi(state, host).returncode != 0:  # run alone: bring the driver up first
        test_driver_from_signed_repo_mismatch_until_reboot(lab_of, test_lab)
    registry = state.registry
    ok(state, host, f"{APT} install docker.io")
    user_config = {"log-driver": "local", "bip": "172.31.250.1/24", "data-root": "/var/lib/docker"}
    ok(state, host, "sudo tee /etc/docker/daemon.json >/dev/null", json.dumps(user_config))
    ok(state, host, f"sudo install -d /etc/docker/certs.d/{registry['host']}")
    ok(state, host, f"sudo tee /etc/docker/certs.d/{registry['host']}/ca.crt >/dev/null",
       Path(registry["ca_file"]).read_text())  # fmt: skip
    ok(state, host, "sudo systemctl restart docker")
    password = Path(registry["password_file"]).read_text()
    ok(state, host, f"sudo docker login -u {registry['username']} --password-stdin "
       f"{registry['host']} >/dev/null", password)  # fmt: skip
    lock, _ = read_lock(Path(state.lock))
    image = lock.images[f"{registry['host']}/tfenv/debian:bookworm"].pinned
    ok(state, host, f"sudo docker pull -q {image}")

    without = on(state, host, f"sudo docker run --rm --gpus all {image} nvidia-smi -L")
    assert without.returncode != 0
    assert 'could not select device driver "" with capabilities: [[gpu]]' in without.stderr

    add_repository(state, host, "nvidia_container_toolkit", TOOLKIT_LIST,
                   "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg")  # fmt: skip
    ok(state, host, f"{APT} update && {APT} install {pinned(TOOLKIT_PACKAGES, '1.17.3-1')}")
    configure = on(state, host, "sudo nvidia-ctk runtime configure --runtime=docker")
    assert "Wrote updated config to /etc/docker/daemon.json" in configure.stderr
    daemon = json.loads(ok(state, host, "cat /etc/docker/daemon.json"))
    assert daemon == {
        **user_config,
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
    }
    ok(state, host, "sudo systemctl restart docker")

    uuids = [gpu["uuid"] for gpu in gpus_for(name, state.gpus_per_host)]
    listed = ok(state, host, f"sudo docker run --rm --gpus all {image} nvidia-smi -L")
    assert listed.splitlines() == [
        f"GPU {index}: NVIDIA H100 80GB HBM3 (UUID: {uuid})" for index, uuid in enumerate(uuids)
    ]
    one = ok(state, host, f"sudo docker run --rm --gpus '\"device=1\"' {image} nvidia-smi -L")
    assert one.splitlines() == [f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {uuids[1]})"]


def test_nfs_mount_unit_shares_files_across_hosts_and_outlives_the_writer(
    lab_of, test_lab: Lab
) -> None:
    state = lab_of(3)
    unit = (
        "[Unit]\nDescription=checkpoints (test)\n\n[Mount]\n"
        f"What={state.nfs_server}:/export/checkpoints\nWhere=/mnt/checkpoints\n"
        "Type=nfs\nOptions=hard,nfsvers=4.1,_netdev\n"
    )
    for host in (0, 1):
        ok(state, host, "sudo tee /etc/systemd/system/mnt-checkpoints.mount >/dev/null", unit)
        ok(
            state,
            host,
            "sudo systemctl daemon-reload && sudo systemctl start mnt-checkpoints.mount",
        )
        assert ok(state, host, "findmnt -n -o SOURCE /mnt/checkpoints").strip() == (
            f"{state.nfs_server}:/export/checkpoints"
        )
    marker = f"step-{os.getpid()}"
    ok(state, 0, f"echo {marker} | sudo tee /mnt/checkpoints/ckpt-{marker}.txt")
    assert ok(state, 1, f"cat /mnt/checkpoints/ckpt-{marker}.txt").strip() == marker
    # The writer goes away entirely; the file stays on the (simulated) server.
    subprocess.run(["docker", "rm", "-f", "-v", state.hosts[0].container], check=True,
                   capture_output=True)  # fmt: skip
    assert ok(state, 1, f"cat /mnt/checkpoints/ckpt-{marker}.txt").strip() == marker
    again = up(test_lab, len(state.hosts), images=bool(state.lock), gpus=state.gpus_per_host)
    assert again.hosts[0].port == state.hosts[0].port  # a re-created host keeps its port
    ok(state, 0, "sudo tee /etc/systemd/system/mnt-checkpoints.mount >/dev/null", unit)
    ok(state, 0, "sudo systemctl daemon-reload && sudo systemctl start mnt-checkpoints.mount")
    assert ok(state, 0, f"cat /mnt/checkpoints/ckpt-{marker}.txt").strip() == marker
