"""A declared container, resolved into exactly what ``docker run`` gets.

:func:`desired_container` turns a model :class:`~tfenv.model.spec.Container`
(plus the lock, the NFS mounts and the secrets' seals) into a
:class:`DesiredContainer`: the pinned image, every environment variable,
label, port, mount and limit. :func:`run_arguments` renders it; the option
table in :mod:`tfenv.containers.drift` compares it with the running one.
Pure: no host, no Docker.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pyinfra.api import QuoteString

from tfenv.model.spec import Container, NfsMount

MANAGED_LABEL = "tfenv.managed"
ENV_NAMES_LABEL = "tfenv.env-names"  # the variables tfenv set: a removed one is drift too
LABEL_NAMES_LABEL = "tfenv.label-names"
SECRETS_LABEL = "tfenv.secrets"  # digest of the secrets' seals: a changed value restarts
SECRETS_DIR = "/etc/tfenv/secrets"
CONTAINERS_DIR = "/etc/tfenv/containers"
HOST_KEYS_DIR = "/var/lib/tfenv/containers"
DEFAULT_SHM = 64 * 1024 * 1024  # Docker's default /dev/shm
SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# sshd is the one process every dev container runs: healthy means it accepts.
HEALTH_TEST = ["CMD-SHELL", "bash -c '</dev/tcp/127.0.0.1/22' || exit 1"]


@dataclass(frozen=True, order=True)
class Mount:
    source: str
    target: str
    readonly: bool


@dataclass(frozen=True, order=True)
class Port:
    container: str  # "22/tcp"
    address: str
    host: str


@dataclass(frozen=True)
class DesiredContainer:
    name: str
    image: str  # name@sha256:...
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]  # the user's, without tfenv's own
    ports: tuple[Port, ...]
    gpus: object  # None, "all", a count, or a tuple of indices
    shm_size: int
    ulimits: tuple[tuple[str, int, int], ...]
    restart: str
    mounts: tuple[Mount, ...]
    secrets_digest: str
    # host paths tfenv prepares before the container starts
    checkpoint_source: str | None = None
    uid: int = 0
    gid: int = 0

    @property
    def tfenv_labels(self) -> dict[str, str]:
        return {
            MANAGED_LABEL: "true",
            "tfenv.container": self.name,
            ENV_NAMES_LABEL: ",".join(name for name, _ in self.env),
            LABEL_NAMES_LABEL: ",".join(name for name, _ in self.labels),
            SECRETS_LABEL: self.secrets_digest,
        }


def size_bytes(size: str) -> int:
    match = re.match(r"^(\d+)([bkmgBKMG]?)$", size)
    if not match:
        raise ValueError(f"size {size!r}")
    return int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]


def secret_env_name(secret: str) -> str:
    return f"{secret.upper()}_FILE"


def secret_path(container: str, secret: str) -> str:
    return f"{SECRETS_DIR}/{container}/{secret}"


def authorized_keys_path(container: str) -> str:
    return f"{CONTAINERS_DIR}/{container}/authorized_keys"


def mounted_secrets(container: Container) -> list[str]:
    """The secrets mounted into ``container``: its own, plus Jupyter's token."""
    names = list(container.secrets)
    if container.jupyter and container.jupyter.token_secret not in names:
        names.append(container.jupyter.token_secret)
    return names


def desired_container(
    name: str,
    container: Container,
    pinned_image: str,
    nfs_mounts: Mapping[str, NfsMount],
    seals: Mapping[str, str],
) -> DesiredContainer:
    """Everything ``docker run`` gets for ``container`` (``seals``: secret -> its seal)."""
    user = container.user
    env = {"TFENV_USER": user.name, "TFENV_UID": str(user.uid), "TFENV_GID": str(user.gid)}
    mounts = [
        Mount(authorized_keys_path(name), "/etc/tfenv/authorized_keys", True),
        Mount(f"{HOST_KEYS_DIR}/{name}/ssh-host-keys", "/etc/tfenv/ssh-host-keys", False),
    ]
    secrets = mounted_secrets(container)
    for secret in secrets:
        mounts.append(Mount(secret_path(name, secret), f"/run/secrets/{secret}", True))
        env[secret_env_name(secret)] = f"/run/secrets/{secret}"
    if container.jupyter:
        env["JUPYTER_TOKEN_FILE"] = f"/run/secrets/{container.jupyter.token_secret}"
        env["JUPYTER_PORT"] = str(container.jupyter.port)
    checkpoint_source = None
    if container.checkpoints:
        # A directory that exists only on the mounted export: with the export
        # down, Docker refuses the bind instead of writing to the local disk.
        mount_point = nfs_mounts[container.checkpoints.nfs].mount_point.rstrip("/")
        checkpoint_source = f"{mount_point}/{name}"
        mounts.append(Mount(checkpoint_source, container.checkpoints.path, False))
    env.update(container.env)  # the user's values win over tfenv's defaults
    digest = hashlib.sha256(
        "\n".join(f"{s}={seals[s]}" for s in sorted(secrets)).encode()
    ).hexdigest()[:32]
    return DesiredContainer(
        name=name,
        image=pinned_image,
        env=tuple(sorted(env.items())),
        labels=tuple(sorted(container.labels.items())),
        ports=tuple(
            sorted(
                Port(f"{p.container}/{p.protocol}", p.address, str(p.host)) for p in container.ports
            )
        ),
        gpus=container.gpus,
        shm_size=size_bytes(container.shm_size) if container.shm_size else DEFAULT_SHM,
        ulimits=tuple(sorted((k, v.soft, v.hard) for k, v in container.ulimits.items())),
        restart=container.restart,
        mounts=tuple(sorted(mounts, key=lambda m: m.target)),
        secrets_digest=digest,
        checkpoint_source=checkpoint_source,
        uid=user.uid,
        gid=user.gid,
    )


def gpus_argument(gpus: object) -> str | None:
    if gpus is None:
        return None
    if gpus == "all":
        return "all"
    if isinstance(gpus, int):
        return str(gpus)
    return '"device=' + ",".join(str(i) for i in gpus) + '"'  # type: ignore[union-attr]


def run_arguments(desired: DesiredContainer) -> list[object]:
    """``docker run`` arguments (after ``docker run -d``), each user value quoted."""
    args: list[object] = ["--name", QuoteString(desired.name)]
    labels = {**dict(desired.labels), **desired.tfenv_labels}
    for key, value in sorted(labels.items()):
        args += ["--label", QuoteString(f"{key}={value}")]
    for key, value in desired.env:
        args += ["--env", QuoteString(f"{key}={value}")]
    for port in desired.ports:
        number, protocol = port.container.split("/")
        args += ["--publish", QuoteString(f"{port.address}:{port.host}:{number}/{protocol}")]
    gpus = gpus_argument(desired.gpus)
    if gpus:
        args += ["--gpus", QuoteString(gpus)]
    args += ["--shm-size", str(desired.shm_size)]
    for name, soft, hard in desired.ulimits:
        args += ["--ulimit", f"{name}={soft}:{hard}"]
    args += ["--restart", desired.restart]
    for mount in desired.mounts:
        spec = f"type=bind,source={mount.source},target={mount.target}"
        args += ["--mount", QuoteString(spec + (",readonly" if mount.readonly else ""))]
    args += [
        "--health-cmd", QuoteString(HEALTH_TEST[1]),
        "--health-interval", "10s", "--health-timeout", "5s",
        "--health-start-period", "30s", "--health-retries", "3",
    ]  # fmt: skip
    args.append(QuoteString(desired.image))
    return args
