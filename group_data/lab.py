"""Declared state of the local lab fleet (the `lab` group, see inventories/lab.py).

The same fields as a real fleet (compare gpu.py); only what points at the lab
differs: its registry (TLS from the lab CA, htpasswd login), its image lock
(written by `tfenv lab up` with the digests it pushed) and lab-local secrets.
Paths come from the lab's state file, so any --dir / $TFENV_LAB_DIR works.
"""

from pathlib import Path

from tfenv.lab.fleet import current_state

# Only these names are host data (pyinfra keeps every other module-level name,
# underscores included, and the lab's state objects cannot become JSON).
__all__ = [
    "apt_repositories",
    "container_toolkit",
    "containers",
    "docker_engine",
    "gpu_check_image",
    "gpu_count",
    "image_lock",
    "nfs_mounts",
    "nvidia_driver",
    "registries",
    "secrets",
]

# pyinfra reads every group_data file whatever the inventory: without a lab, no data.
_state = current_state(required=False)
if _state is not None:
    _registry = _state.registry
    _image = f"{_registry['host']}/tfenv/tensorflow"

    # SIMULATED GPUs (tfenv lab up --gpus N) and the lab's signed, simulated
    # copies of NVIDIA's apt repositories: only URLs and keys differ from a
    # real fleet. The driver, toolkit and their pinning are declared as usual.
    gpu_count = _state.gpus_per_host
    apt_repositories = _state.apt_repositories
    nvidia_driver = {
        "branch": "550",
        "version": "550.127.05",
        "kernel_modules": "open",
        "reboot": "if-needed",
    }
    container_toolkit = {"version": "1.17.3"}
    docker_engine = {"source": "distribution", "version": "20.10.24"}

    # The lab's simulated NFS server (sshfs underneath; see tfenv/lab/sim/nfs.py).
    nfs_mounts = {
        "checkpoints": {
            "server": _state.nfs_server,
            "export": "/export/checkpoints",
            "mount_point": "/mnt/checkpoints",
            "options": ["hard", "nfsvers=4.1"],
        },
    }

    registries = {
        _registry["host"]: {
            "username": _registry["username"],
            "password_secret": "lab_registry_password",
            "ca_file": _registry["ca_file"],
            # tfenv lock runs here, where the registry is published on 127.0.0.1.
            "endpoint": f"https://{_registry['local']}",
        },
    }

    secrets = {"lab_registry_password": {"file": _registry["password_file"]}}

if _state is not None and _state.lock:
    # Digests of the lab images (real TensorFlow CPU builds; `tfenv lab up`
    # without --no-images pushes them and writes this lock).
    image_lock = _state.lock
    # A small image (Debian) that proves GPUs are visible inside a container.
    gpu_check_image = f"{_registry['host']}/tfenv/debian:bookworm"
    secrets = {
        **secrets,
        # A random token `tfenv lab up` made (mode 0600).
        "jupyter_token_dev": {"file": _state.secrets["jupyter_token_dev"]},
    }

    # One SSH + Jupyter dev container per lab host, reachable with the lab key.
    containers = {
        "dev": {
            "image": f"{_image}:2.17.1-lab1",
            "user": {"name": "researcher", "uid": 1000, "gid": 1000},
            "authorized_keys": [Path(_state.key + ".pub").read_text().strip()],
            "ports": [
                {"container": 2222, "host": 2222},
                {"container": 8888, "host": 8888},
            ],
            "shm_size": "1g",
            "gpus": "all",
            "jupyter": {"port": 8888, "token_secret": "jupyter_token_dev"},
            "checkpoints": {"nfs": "checkpoints", "path": "/checkpoints"},
            # A replaced container is healthy after Docker's first check: every 2 s
            # in the lab (each check is an exec; 15 hosts share 2 cores), 10 s by
            # default.
            "health_interval": 2,
            # The lab's TensorFlow runs on this machine's shared CPUs (a VM whose
            # whole CPU is at times three times slower for minutes): rollouts
            # compare p99 at equal CPU speed. Even so, two images that differ in
            # nothing have read up to x3.2 apart in CI (five hosts on 2 cores):
            # the lab allows x5 (lab4-slow reads x40-70). 300 calls: rounds of
            # 30 for the probe's best round, shorter ones for noise to spoil.
            # (The rollout lab tests read scripted metrics instead, so that no
            # timing decides a test: tests/lab_fixtures.py, SCRIPTED_PROBE.)
            "canary": {
                "inferences": 300,
                "gates": {"p99_cpu_relative": True, "p99_factor": 5.0},
            },
        },
    }
