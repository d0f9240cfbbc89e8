"""A declared container resolved into docker run arguments (pure: no host, no Docker)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import DIGEST_A, SECRET_FILE_VALUE
from pyinfra.api import StringCommand

from tfenv.containers.desired import account_files, desired_container
from tfenv.containers.options import run_arguments
from tfenv.model.load import load
from tfenv.model.secrets import SecretValue
from tfenv.operations.sealed_file import seal_of


def _desired(workdir: Path, data: dict, name: str = "dev-a"):
    spec = load("gpu-07.test", data, workdir)
    container = spec.containers[name]
    pinned = spec.image_lock.images[container.image].pinned
    seals = {"token": seal_of(f"/etc/tfenv/secrets/{name}/token", SecretValue("t", "v"))}
    return desired_container(name, container, pinned, spec.nfs_mounts, seals, spec.publish_address)


def _rendered(desired) -> str:
    """The arguments exactly as the shell gets them, quoting included."""
    return StringCommand(*run_arguments(desired)).get_raw_value()


def test_dev_container_arguments(workdir: Path, good_data: dict) -> None:
    args = _rendered(_desired(workdir, good_data))
    assert args.endswith(f"registry.test:5000/ml/tf@{DIGEST_A}")  # by digest, last
    for part in [
        "--name dev-a",
        "--label tfenv.managed=true",
        "--env HOME=/home/alice",
        "--env TFENV_SSH_PORT=2222 --env TFENV_USER=alice",
        "--env TOKEN_FILE=/run/secrets/token",
        "--env JUPYTER_TOKEN_FILE=/run/secrets/token",
        "--publish 0.0.0.0:2201:2222/tcp",
        "--gpus '\"device=0,1\"'",
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


def test_values_with_shell_characters_are_quoted(workdir: Path, good_data: dict) -> None:
    good_data["containers"]["dev-a"]["env"] = {"EXPERIMENT": "a b; rm -rf /"}
    good_data["containers"]["dev-a"]["labels"] = {"team": "$(reboot)"}
    args = _rendered(_desired(workdir, good_data))
    assert "--env 'EXPERIMENT=a b; rm -rf /'" in args
    assert "--label 'team=$(reboot)'" in args


def test_docker_run_arguments_exactly(workdir: Path, good_data: dict) -> None:
    """Every argument, in order, with the quoting the host's shell gets: a user value
    that loses its quotes (or an argument that moves) changes this string."""
    dev = good_data["containers"]["dev-a"]
    dev["env"] = {"EXPERIMENT": "a b; rm -rf /", "QUOTE": "it's"}
    dev["labels"] = {"team": "$(reboot)"}
    desired = _desired(workdir, good_data)
    assert re.fullmatch("[0-9a-f]{32}", desired.secrets_digest)
    mount = "--mount type=bind,source="
    assert _rendered(desired) == " ".join([
        "--name dev-a",
        "--user 2001:2001",
        "--env 'EXPERIMENT=a b; rm -rf /'",
        "--env HOME=/home/alice",
        "--env JUPYTER_PORT=8888",
        "--env JUPYTER_TOKEN_FILE=/run/secrets/token",
        "--env 'QUOTE=it'\"'\"'s'",
        "--env TFENV_SSH_PORT=2222",
        "--env TFENV_USER=alice",
        "--env TOKEN_FILE=/run/secrets/token",
        "--env USER=alice",
        "--label 'team=$(reboot)'",
        "--label tfenv.container=dev-a",
        "--label tfenv.env-names=EXPERIMENT,HOME,JUPYTER_PORT,JUPYTER_TOKEN_FILE,QUOTE,"
        "TFENV_SSH_PORT,TFENV_USER,TOKEN_FILE,USER",
        "--label tfenv.label-names=team",
        "--label tfenv.managed=true",
        f"--label tfenv.secrets={desired.secrets_digest}",
        "--label tfenv.ssh-port=2222",
        "--publish 0.0.0.0:2201:2222/tcp",
        "--gpus '\"device=0,1\"'",
        "--shm-size 67108864",
        "--restart unless-stopped",
        # sorted by target
        f"{mount}/mnt/ckpt/dev-a,target=/checkpoints",
        f"{mount}/etc/tfenv/containers/dev-a/group,target=/etc/group,readonly",
        f"{mount}/etc/tfenv/containers/dev-a/passwd,target=/etc/passwd,readonly",
        f"{mount}/etc/tfenv/containers/dev-a/authorized_keys,target=/etc/tfenv/authorized_keys,"
        "readonly",
        f"{mount}/var/lib/tfenv/containers/dev-a/ssh-host-keys,target=/etc/tfenv/ssh-host-keys",
        f"{mount}/var/lib/tfenv/containers/dev-a/home,target=/home/alice",
        f"{mount}/etc/tfenv/secrets/dev-a/token,target=/run/secrets/token,readonly",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--health-cmd 'bash -c '\"'\"'</dev/tcp/127.0.0.1/2222'\"'\"' || exit 1'",
        "--health-interval 10s --health-timeout 5s --health-start-period 30s --health-retries 3",
        f"registry.test:5000/ml/tf@{DIGEST_A}",
    ])  # fmt: skip


def test_least_privilege_by_default(workdir: Path, good_data: dict) -> None:
    args = _rendered(_desired(workdir, good_data))
    for part in [
        "--user 2001:2001",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        # The user's account: the only one in the container, from files tfenv writes.
        "--mount type=bind,source=/etc/tfenv/containers/dev-a/passwd,target=/etc/passwd,readonly",
        "--mount type=bind,source=/etc/tfenv/containers/dev-a/group,target=/etc/group,readonly",
        # The home outlives every container.
        "--mount type=bind,source=/var/lib/tfenv/containers/dev-a/home,target=/home/alice ",
        "--health-cmd 'bash -c '\"'\"'</dev/tcp/127.0.0.1/2222'\"'\"' || exit 1'",
    ]:
        assert part in args, part
    assert "--cap-add" not in args and "--read-only" not in args and "--tmpfs" not in args


def test_capabilities_read_only_and_ssh_port_are_declared(workdir: Path, good_data: dict) -> None:
    good_data["containers"]["dev-a"].update(
        cap_add=["sys_ptrace", "CAP_NET_ADMIN"], read_only=True, ssh_port=2022
    )
    args = _rendered(_desired(workdir, good_data))
    assert "--cap-drop ALL --cap-add NET_ADMIN --cap-add SYS_PTRACE" in args
    assert "--tmpfs /run --tmpfs /tmp --read-only" in args
    assert "--env TFENV_SSH_PORT=2022" in args and "--label tfenv.ssh-port=2022" in args


def test_jupyter_port_is_published_on_loopback_by_default(workdir: Path, good_data: dict) -> None:
    dev = good_data["containers"]["dev-a"]
    dev["ports"] = [{"container": 2222, "host": 2201}, {"container": 8888, "host": 8801}]
    good_data["publish_address"] = "10.1.2.3"
    args = _rendered(_desired(workdir, good_data))
    assert "--publish 10.1.2.3:2201:2222/tcp" in args
    assert "--publish 127.0.0.1:8801:8888/tcp" in args
    dev["ports"][1]["address"] = "0.0.0.0"  # said out loud: published as declared
    assert "--publish 0.0.0.0:8801:8888/tcp" in _rendered(_desired(workdir, good_data))


def test_workspace_on_nfs(workdir: Path, good_data: dict) -> None:
    good_data["containers"]["dev-a"]["workspace"] = {"nfs": "ckpt"}
    desired = _desired(workdir, good_data)
    assert "--mount type=bind,source=/mnt/ckpt/.tfenv-homes/dev-a,target=/home/alice " in (
        _rendered(desired)
    )
    assert desired.needs_mounted == ("/mnt/ckpt",)
    assert desired.home_source == "/mnt/ckpt/.tfenv-homes/dev-a"


def test_account_files_hold_only_the_user_besides_root_and_nobody(
    workdir: Path, good_data: dict
) -> None:
    files = account_files(_desired(workdir, good_data))
    assert files["passwd"].decode().splitlines() == [
        "root:x:0:0:root:/root:/usr/sbin/nologin",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
        "alice:x:2001:2001:tfenv dev user:/home/alice:/bin/bash",
    ]
    assert files["group"].decode().splitlines() == [
        "root:x:0:",
        "nogroup:x:65534:",
        "alice:x:2001:",
    ]


def test_gpu_forms_and_sizes(workdir: Path, good_data: dict) -> None:
    dev = good_data["containers"]["dev-a"]
    dev.update(gpus="all", shm_size="8g", ulimits={"memlock": {"soft": -1, "hard": -1}})
    args = _rendered(_desired(workdir, good_data))
    assert "--gpus all" in args and "--shm-size 8589934592" in args
    assert "--ulimit memlock=-1:-1" in args
    dev["gpus"] = 2
    assert "--gpus 2 " in _rendered(_desired(workdir, good_data))
