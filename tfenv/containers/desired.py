"""A declared container, resolved into exactly what ``docker run`` gets.

:func:`desired_container` turns a model :class:`~tfenv.model.spec.Container`
(plus the lock, the NFS mounts and the secrets' seals) into a
:class:`DesiredContainer`: the pinned image, the user, every environment
variable, label, port, mount, limit and privilege. The option table in
:mod:`tfenv.containers.options` renders it as ``docker run`` arguments and
compares it with the running one. Pure: no host, no Docker.

Least privilege by default: every process runs as the declared user
(``--user UID:GID``, with ``/etc/passwd`` and ``/etc/group`` written by tfenv),
all capabilities dropped, ``no-new-privileges``. The user's home is a host
directory (or one on an NFS export) that outlives every replacement.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tfenv import layout
from tfenv.layout import (
    CONTAINER_LABEL,
    ENV_NAMES_LABEL,
    LABEL_NAMES_LABEL,
    MANAGED_LABEL,
    SECRETS_LABEL,
    SSH_PORT_LABEL,
    secret_path,
)
from tfenv.model.gpus import Gpus
from tfenv.model.spec import DEFAULT_HEALTH_INTERVAL, Container, NfsMount, ReplacePolicy

DEFAULT_SHM = 64 * 1024 * 1024  # Docker's default /dev/shm
SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
READ_ONLY_TMPFS = ("/run", "/tmp")  # writable scratch on a read-only root filesystem
CAP_DROP = ("ALL",)
SECURITY_OPT = ("no-new-privileges",)
DEFAULT_REPLACE = ReplacePolicy()


def health_test(ssh_port: int) -> list[str]:
    """sshd is the one process every dev container runs: healthy means it accepts."""
    return ["CMD-SHELL", f"bash -c '</dev/tcp/127.0.0.1/{ssh_port}' || exit 1"]


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
    user: str  # "UID:GID", as docker run --user gets it
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]  # the user's, without tfenv's own
    ports: tuple[Port, ...]
    gpus: Gpus
    shm_size: int
    ulimits: tuple[tuple[str, int, int], ...]
    restart: str
    mounts: tuple[Mount, ...]
    tmpfs: tuple[str, ...]
    read_only: bool
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    security_opt: tuple[str, ...]
    healthcheck: tuple[str, ...]
    secrets_digest: str
    uid: int
    gid: int
    user_name: str
    ssh_port: int
    # host directories tfenv prepares before the container starts
    home_source: str
    checkpoint_source: str | None = None
    # NFS mount points these directories live on: never written while unmounted
    needs_mounted: tuple[str, ...] = ()
    replace: ReplacePolicy = DEFAULT_REPLACE
    jupyter: bool = False
    health_interval: int = DEFAULT_HEALTH_INTERVAL  # seconds
    # tfenv rollout's labels (id, from, to: see tfenv.layout) on a container it moved
    rollout: tuple[tuple[str, str], ...] = ()

    @property
    def tfenv_labels(self) -> dict[str, str]:
        return {
            MANAGED_LABEL: "true",
            CONTAINER_LABEL: self.name,
            ENV_NAMES_LABEL: ",".join(name for name, _ in self.env),
            LABEL_NAMES_LABEL: ",".join(name for name, _ in self.labels),
            SECRETS_LABEL: self.secrets_digest,
            SSH_PORT_LABEL: str(self.ssh_port),
            **dict(self.rollout),
        }


def size_bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)([bkmgBKMG]?)", size, re.ASCII)
    if not match:
        raise ValueError(f"size {size!r}")
    return int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]


def secret_env_name(secret: str) -> str:
    return f"{secret.upper()}_FILE"


def authorized_keys_path(container: str) -> str:
    return layout.container_file(container, "authorized_keys")


def account_files(desired: DesiredContainer) -> dict[str, bytes]:
    """``/etc/passwd`` and ``/etc/group`` for the container (mounted read-only):
    the user, and no other account that could log in (sshd and every process
    run as the user, so nothing in the container can create one)."""
    name, uid, gid = desired.user_name, desired.uid, desired.gid
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{name}:x:{uid}:{gid}:tfenv dev user:/home/{name}:/bin/bash\n"
    )
    group = f"root:x:0:\nnogroup:x:65534:\n{name}:x:{gid}:\n"
    return {"passwd": passwd.encode(), "group": group.encode()}


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
    publish_address: str = "0.0.0.0",
) -> DesiredContainer:
    """Everything ``docker run`` gets for ``container`` (``seals``: secret -> its seal)."""
    user = container.user
    home = f"/home/{user.name}"
    env = {
        "HOME": home,
        "USER": user.name,
        "TFENV_USER": user.name,
        "TFENV_SSH_PORT": str(container.ssh_port),
    }
    mounts = [
        Mount(authorized_keys_path(name), layout.AUTHORIZED_KEYS_TARGET, True),
        Mount(layout.host_keys_dir(name), layout.HOST_KEYS_TARGET, False),
        Mount(layout.container_file(name, "passwd"), "/etc/passwd", True),
        Mount(layout.container_file(name, "group"), "/etc/group", True),
    ]
    secrets = mounted_secrets(container)
    for secret in secrets:
        target = f"{layout.SECRETS_TARGET}/{secret}"
        mounts.append(Mount(secret_path(name, secret), target, True))
        env[secret_env_name(secret)] = target
    if container.jupyter:
        env["JUPYTER_TOKEN_FILE"] = f"{layout.SECRETS_TARGET}/{container.jupyter.token_secret}"
        env["JUPYTER_PORT"] = str(container.jupyter.port)
    needs_mounted = []
    # Directories on an export exist only while it is mounted: with the export
    # down, the deploy stops and Docker refuses the bind instead of writing to
    # the local disk.
    if container.workspace.nfs:
        mount_point = nfs_mounts[container.workspace.nfs].mount_point
        home_source = layout.nfs_home(mount_point, name)
        needs_mounted.append(mount_point.rstrip("/"))
    else:
        home_source = layout.local_home(name)
    mounts.append(Mount(home_source, home, False))
    checkpoint_source = None
    if container.checkpoints:
        mount_point = nfs_mounts[container.checkpoints.nfs].mount_point
        checkpoint_source = layout.nfs_checkpoints(mount_point, name)
        needs_mounted.append(mount_point.rstrip("/"))
        mounts.append(Mount(checkpoint_source, container.checkpoints.path, False))
    env.update(container.env)  # the user's values win over tfenv's defaults
    digest = hashlib.sha256(
        "\n".join(f"{s}={seals[s]}" for s in sorted(secrets)).encode()
    ).hexdigest()[:32]
    return DesiredContainer(
        name=name,
        image=pinned_image,
        user=f"{user.uid}:{user.gid}",
        env=tuple(sorted(env.items())),
        labels=tuple(sorted(container.labels.items())),
        ports=tuple(
            sorted(
                Port(
                    f"{p.container}/{p.protocol}",
                    container.port_address(p, publish_address),
                    str(p.host),
                )
                for p in container.ports
            )
        ),
        gpus=container.gpus,
        shm_size=size_bytes(container.shm_size) if container.shm_size else DEFAULT_SHM,
        ulimits=tuple(sorted((k, v.soft, v.hard) for k, v in container.ulimits.items())),
        restart=container.restart,
        mounts=tuple(sorted(mounts, key=lambda m: m.target)),
        tmpfs=READ_ONLY_TMPFS if container.read_only else (),
        read_only=container.read_only,
        cap_drop=CAP_DROP,
        cap_add=tuple(sorted(set(container.cap_add))),
        security_opt=SECURITY_OPT,
        healthcheck=tuple(health_test(container.ssh_port)),
        secrets_digest=digest,
        uid=user.uid,
        gid=user.gid,
        user_name=user.name,
        ssh_port=container.ssh_port,
        home_source=home_source,
        checkpoint_source=checkpoint_source,
        needs_mounted=tuple(sorted(set(needs_mounted))),
        replace=container.replace,
        jupyter=container.jupyter is not None,
        health_interval=container.health_interval,
    )
