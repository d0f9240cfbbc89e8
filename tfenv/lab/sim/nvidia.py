"""SIMULATED NVIDIA stack for the lab: signed apt repositories and simulated GPUs.

``apt.lab.test`` (a lab service container) serves two flat, signed apt
repositories shaped like NVIDIA's: the CUDA repository for Debian 12 (driver
packages under their real names and versions) and the container toolkit's
(its four packages). What they install are the simulators in ``files/``:
``nvidia-smi``, the kernel-module load at boot, ``nvidia-persistenced``,
``nvidia-ctk`` and ``nvidia-container-runtime-hook``. The lab's data points
the deploy's repositories at them (URL and key only); nothing else changes.

Each lab host gets simulated GPUs (``/etc/nvidia-sim/gpus.json``, read-only):
H100s with stable UUIDs derived from the host's name.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from tfenv.lab.images import build_image
from tfenv.lab.run import run
from tfenv.lab.service import Found, ensure_service
from tfenv.lab.sim import sim_file

ALIAS = "apt.lab.test"
CUDA_URL = f"http://{ALIAS}/cuda/repos/debian12/x86_64/"
TOOLKIT_URL = f"http://{ALIAS}/libnvidia-container/stable/deb/amd64/"
DRIVER_VERSIONS = ("550.127.05", "550.144.03", "560.35.03", "550.163.01")  # files/build-repos.py
BROKEN_DRIVER = "550.163.01"  # its module never loads (files/nvidia-sim-load-module)
TOOLKIT_VERSIONS = ("1.17.3", "1.17.8")
SIM_FILES = (
    "build-repos.py",
    "nvidia-smi",
    "nvidia-ctk",
    "nvidia-container-runtime-hook",
    "nvidia-container-runtime",
    "nvidia-persistenced",
    "nvidia-sim-load-module",
)
GPU_NAME = "NVIDIA H100 80GB HBM3"
GPU_MEMORY_MIB = 81559  # what a real H100 80GB HBM3 reports as memory.total
# PCI bus ids of an 8-GPU HGX H100 board, in nvidia-smi's index order.
BUS_IDS = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")


def repositories_image() -> str:
    return build_image(
        "tfenv-lab/nvidia-apt-sim",
        sim_file("aptrepo.Dockerfile"),
        {name: sim_file(name) for name in SIM_FILES},
        # The headers stub is named after the lab hosts' kernel (this machine's).
        {"KERNEL_RELEASE": os.uname().release},
        what="the SIMULATED NVIDIA apt repositories (signed; NVIDIA's package names)",
    )


def ensure_repositories(
    *, lab_name: str, label: str, network: str, lab_dir: Path, found: Found | None
) -> dict[str, dict[str, str]]:
    """Serve the simulated repositories; return the lab's ``apt_repositories`` data."""
    container = f"{lab_name}-nvidia-apt"
    ensure_service(
        container=container,
        role="nvidia-apt",
        alias=ALIAS,
        image=repositories_image(),
        found=found,
        lab_label=label,
        lab_dir=lab_dir,
        network=network,
        run_args=[],
        what=f"the SIMULATED NVIDIA apt repositories ({ALIAS})",
    )
    keys = lab_dir / "apt-keys"
    keys.mkdir(exist_ok=True)
    run(["docker", "cp", f"{container}:/srv/apt/keys/.", str(keys)])
    return {
        "cuda": {"url": CUDA_URL, "key": str((keys / "cuda-archive-keyring.gpg").resolve())},
        "nvidia_container_toolkit": {
            "url": TOOLKIT_URL,
            "key": str((keys / "nvidia-container-toolkit-keyring.gpg").resolve()),
        },
    }


def gpus_for(host: str, count: int) -> list[dict]:
    """The simulated GPUs of one lab host: the same UUIDs every time."""
    if not 0 <= count <= len(BUS_IDS):
        raise ValueError(f"a lab host simulates 0 to {len(BUS_IDS)} GPUs, not {count}")
    return [
        {
            "name": GPU_NAME,
            "uuid": f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{host}.gpu{index}.lab.test')}",
            "serial": "1654"
            + str(int(hashlib.sha256(f"{host}/{index}".encode()).hexdigest(), 16))[:9],
            "pci_bus_id": f"00000000:{BUS_IDS[index]}:00.0",
            "memory_mib": GPU_MEMORY_MIB,
        }
        for index in range(count)
    ]


def write_gpus(directory: Path, host: str, count: int) -> None:
    """``directory/gpus.json``, mounted read-only at /etc/nvidia-sim in the host."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(gpus_for(host, count), indent=2) + "\n"
    target = directory / "gpus.json"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
