"""A declared container resolved into docker run arguments (pure: no host, no Docker)."""

from __future__ import annotations

from pathlib import Path

from conftest import DIGEST_A, SECRET_FILE_VALUE

from tfenv.containers.desired import desired_container, run_arguments
from tfenv.model.load import load
from tfenv.model.secrets import SecretValue
from tfenv.operations.sealed_file import seal_of


def _desired(workdir: Path, data: dict, name: str = "dev-a"):
    spec = load("gpu-07.test", data, workdir)
    container = spec.containers[name]
    pinned = spec.image_lock.images[container.image].pinned
    seals = {"token": seal_of(f"/etc/tfenv/secrets/{name}/token", SecretValue("t", "v"))}
    return desired_container(name, container, pinned, spec.nfs_mounts, seals)


def _rendered(desired) -> str:
    return " ".join(str(a.obj if hasattr(a, "obj") else a) for a in run_arguments(desired))


def test_dev_container_arguments(workdir: Path, good_data: dict) -> None:
    args = _rendered(_desired(workdir, good_data))
    assert args.endswith(f"registry.test:5000/ml/tf@{DIGEST_A}")  # by digest, last
    for part in [
        "--name dev-a",
        "--label tfenv.managed=true",
        "--env TFENV_GID=2001 --env TFENV_UID=2001 --env TFENV_USER=alice",
        "--env TOKEN_FILE=/run/secrets/token",
        "--env JUPYTER_TOKEN_FILE=/run/secrets/token",
        "--publish 0.0.0.0:2201:22/tcp",
        '--gpus "device=0,1"',
        "--shm-size 67108864",
        "--restart unless-stopped",
        "--mount type=bind,source=/etc/tfenv/secrets/dev-a/token,"
        "target=/run/secrets/token,readonly",
        "--mount type=bind,source=/mnt/ckpt/dev-a,target=/checkpoints ",
        "--mount type=bind,source=/var/lib/tfenv/containers/dev-a/ssh-host-keys,"
        "target=/etc/tfenv/ssh-host-keys ",
    ]:
        assert part in args, part
    assert SECRET_FILE_VALUE not in args  # a path, never the value


def test_gpu_forms_and_sizes(workdir: Path, good_data: dict) -> None:
    dev = good_data["containers"]["dev-a"]
    dev.update(gpus="all", shm_size="8g", ulimits={"memlock": {"soft": -1, "hard": -1}})
    args = _rendered(_desired(workdir, good_data))
    assert "--gpus all" in args and "--shm-size 8589934592" in args
    assert "--ulimit memlock=-1:-1" in args
    dev["gpus"] = 2
    assert "--gpus 2 " in _rendered(_desired(workdir, good_data))
