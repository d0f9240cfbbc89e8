"""The declared state of one host, as typed, frozen models.

Each top-level key of pyinfra host data that tfenv reads has one model here
(see ``tfenv.model.load.DeclaredData``). Unknown keys inside a section are errors (typos), so is
any value of the wrong shape. Cross-field rules (ports, GPU indices, images in
the lock, secret references) live in :mod:`tfenv.model.load`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tfenv.images.lock import ImageLock
from tfenv.model.gpus import NO_GPUS, Gpus
from tfenv.model.secrets import SecretRef

UNIX_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"
SECRET_NAME = r"^[a-z][a-z0-9_]{0,63}$"
CONTAINER_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"
APT_VERSION = r"^[0-9][A-Za-z0-9.+:~-]*$"
SEMVER = r"^\d+\.\d+\.\d+$"
DRIVER_BRANCH = r"^\d{3}$"
DRIVER_VERSION = r"^\d{3}\.\d{1,3}(\.\d{1,3})?$"
URL = r"^https?://[!-~]+$"  # printable ASCII, no space
# Paths reach docker --mount specs (split on ',' and '='), systemd units (split
# on newlines) and shell commands: ASCII letters, digits and ._@+- per
# component, nothing else.
PATH_COMPONENT = r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*|\.[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*"
ABS_PATH = rf"^/(?:(?:{PATH_COMPONENT})(?:/(?:{PATH_COMPONENT}))*)?/?$"
SIZE = r"^\d+[bkmgBKMG]?$"
NFS_NAME = r"^[a-z][a-z0-9_-]{0,63}$"
LABEL_KEY = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$"
# Where a mount must never land: the root and the system's own directories.
SYSTEM_DIRS = frozenset(
    (
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/var",
        "/var/lib",
        "/var/lib/docker",
        "/var/run",
        "/usr/local",
        "/mnt",
        "/media",
    )
)
MAX_ENV_VALUE = 131072 - 1  # the kernel's MAX_ARG_STRLEN, with NAME= inside it

SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def matching(pattern: str, expected: str, *extra_checks):
    """A str type whose error message says what was expected, in words: the whole
    value must match ``pattern`` (ASCII only: no Unicode digits, no trailing newline)."""
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str:
        if not value.isascii() or not compiled.fullmatch(value):
            raise ValueError(expected)
        for extra in extra_checks:
            extra(value)
        return value

    return Annotated[str, AfterValidator(check)]


def _not_a_system_directory(value: str) -> None:
    if value.rstrip("/") in SYSTEM_DIRS or not value.rstrip("/"):  # "/", "//"
        raise ValueError(
            "a directory of its own such as /mnt/checkpoints (not / or a system directory "
            f"such as {value.rstrip('/') or '/'})"
        )


def _no_trailing_slash(value: str) -> None:
    # /mnt/ckpt/ and /mnt/ckpt are one directory: one spelling, so duplicates show.
    if len(value) > 1 and value.endswith("/"):
        raise ValueError(f"an absolute path without a trailing '/' (such as {value.rstrip('/')})")


def _not_zero(value: str) -> None:
    if int(value.rstrip("bkmgBKMG")) == 0:
        raise ValueError("a size above 0 (Docker reads 0 as its 64m default)")


def _ip_address(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("an IP address such as 0.0.0.0 or 127.0.0.1") from None


UnixName = matching(UNIX_NAME, "a Unix user name (lowercase letters, digits, '_' or '-')")
SecretName = matching(SECRET_NAME, "a secret name (lowercase letters, digits and '_')")
AptVersion = matching(APT_VERSION, "a package version such as 27.3.1 or 5:27.3.1-1~debian.12")
Semver = matching(SEMVER, "a version such as 1.17.3")
DriverBranch = matching(DRIVER_BRANCH, "a three-digit driver branch such as '550'")
DriverVersion = matching(DRIVER_VERSION, "an exact driver version such as '550.127.05'")
Url = matching(URL, "an http(s) URL")
PATH_WORDS = "an absolute path of letters, digits and ._@+- (no ',', '=', spaces or '..')"
AbsPath = matching(ABS_PATH, PATH_WORDS)
# A directory tfenv mounts something on (host mount point, path in a container).
MountPath = matching(ABS_PATH, PATH_WORDS, _not_a_system_directory, _no_trailing_slash)
Size = matching(SIZE, "a size such as 8g, 512m or 1073741824", _not_zero)
Address = matching(r"^[0-9a-fA-F.:]+$", "an IP address such as 0.0.0.0 or 127.0.0.1", _ip_address)
Hostname = matching(r"^[A-Za-z0-9.:\[\]-]+$", "a host name or IP address")

Port = Annotated[int, Field(ge=1, le=65535)]
Uid = Annotated[int, Field(ge=1, le=2**31 - 2)]  # root (0) is not a dev user


def _https(value: str) -> str:
    if not re.fullmatch(r"https://[!-.0-~]+/?", value, re.ASCII):
        raise ValueError("an https://HOST[:PORT] address")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Driver(Strict):
    """NVIDIA driver: the branch and the exact version inside it."""

    branch: DriverBranch
    version: DriverVersion
    kernel_modules: Literal["open", "proprietary"] = "open"
    reboot: Literal["never", "if-needed"] = "if-needed"
    # At most this many hosts of one deploy run reboot at the same time (the
    # smallest value any host of the inventory declares holds for the run).
    reboot_max_parallel: int = Field(default=1, ge=1, le=10000)
    persistence_mode: bool = True

    @model_validator(mode="after")
    def _version_in_branch(self) -> Driver:
        if not self.version.startswith(self.branch + "."):
            raise ValueError(
                f"version {self.version!r} to belong to branch {self.branch!r} "
                f"(start with '{self.branch}.')"
            )
        return self


class DockerEngine(Strict):
    source: Literal["docker", "distribution"] = "docker"
    version: AptVersion


class ContainerToolkit(Strict):
    version: Semver


class AptRepository(Strict):
    """A package repository; override ``url`` and ``key`` for mirrors and air gaps."""

    url: Url
    key: str = Field(min_length=1, description="https URL or local path of the signing key")


class AptRepositories(Strict):
    cuda: AptRepository | None = None
    nvidia_container_toolkit: AptRepository | None = None
    docker: AptRepository | None = None


class Registry(Strict):
    username: str = Field(min_length=1)
    password_secret: SecretName
    ca_file: str | None = None
    # Where the control machine reaches the registry for `tfenv lock`, when not
    # at https://NAME (an SSH tunnel, the lab's 127.0.0.1 port). Hosts always use NAME.
    endpoint: Annotated[str, AfterValidator(_https)] | None = None


class NfsMount(Strict):
    server: Hostname
    export: AbsPath  # "/" is a valid NFSv4 export
    mount_point: MountPath
    options: tuple[str, ...] = ("hard", "nfsvers=4.1")

    @field_validator("options")
    @classmethod
    def _plain_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for option in value:
            if not re.fullmatch(r"[A-Za-z0-9_.=:/-]+", option, re.ASCII):
                raise ValueError(f"mount option {option!r}: letters, digits and _.=:/- only")
        return value


class User(Strict):
    name: UnixName
    uid: Uid
    gid: Uid


class PortMapping(Strict):
    container: Port
    host: Port
    # None: 127.0.0.1 for Jupyter's port (reach it through SSH), the host's
    # publish_address for every other port.
    address: Address | None = None
    protocol: Literal["tcp", "udp"] = "tcp"


class Ulimit(Strict):
    soft: int = Field(ge=-1)
    hard: int = Field(ge=-1)


class Jupyter(Strict):
    port: Port = 8888
    token_secret: SecretName


class Checkpoints(Strict):
    nfs: str = Field(min_length=1, description="name of an entry in nfs_mounts")
    path: MountPath = "/checkpoints"


CAPABILITIES = frozenset(
    [
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "SYSLOG",
        "WAKE_ALARM",
    ]
)


def _capability(value: str) -> str:
    name = value.upper().removeprefix("CAP_") if isinstance(value, str) else value
    if name not in CAPABILITIES:
        raise ValueError("a Linux capability name such as NET_ADMIN or SYS_PTRACE")
    return name


Capability = Annotated[str, AfterValidator(_capability)]


class Workspace(Strict):
    """Where the user's home lives: a host directory by default, or on an NFS mount."""

    nfs: str | None = Field(default=None, min_length=1, description="an entry in nfs_mounts")


class ReplacePolicy(Strict):
    """What tfenv does when a container it must replace is in use.

    ``when-idle``: leave it, report the replacement as pending (the host fails);
    ``wait``: poll until idle for up to ``timeout`` seconds, then replace;
    ``now``: tell the logged-in users' terminals, then replace.
    """

    policy: Literal["when-idle", "wait", "now"] = "when-idle"
    timeout: int = Field(default=600, ge=1, le=86400, description="seconds, for 'wait'")
    idle_minutes: int = Field(default=30, ge=0, le=10080)


PROBE_ARG = r"^[A-Za-z0-9_./=:,+@%-]{1,256}$"
ProbeArg = Annotated[str, Field(pattern=PROBE_ARG)]


class CanaryGates(Strict):
    """Thresholds of a rollout's metric gates: the new container against the
    baseline measured on the old one, on the same host."""

    p99_factor: float = Field(default=1.5, ge=1.0, le=100.0)
    # Compare p99 at equal CPU speed: each reading scaled by the probe's cpu_ms (a
    # fixed piece of CPU work timed beside the model). For models that run on the
    # CPU of hosts that share it (VMs on a busy hypervisor, the lab), where the
    # whole host is sometimes several times slower for minutes; not for GPU-bound
    # models, whose latency does not follow the CPU's.
    p99_cpu_relative: bool = False
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    kl_divergence: float = Field(default=0.05, ge=0.0, le=100.0)
    gpu_memory_factor: float = Field(default=1.2, ge=1.0, le=100.0)


class Canary(Strict):
    """How ``tfenv rollout`` measures this container (baseline, then the new image).

    ``probe``: the command (argv) run inside the container, printing one JSON
    object of metrics; empty: tfenv's own probe, which loads the reference
    SavedModel at ``model`` (default: ``CHECKPOINTS/tfenv-canary/reference-model``)
    and runs ``inferences`` calls on fixed inputs.
    """

    model: MountPath | None = None
    probe: tuple[ProbeArg, ...] = ()
    inferences: int = Field(default=500, ge=10, le=100000)
    health_timeout: int = Field(default=180, ge=10, le=3600, description="seconds")
    gates: CanaryGates = CanaryGates()


DEFAULT_HEALTH_INTERVAL = 10  # seconds between Docker's health checks


class Container(Strict):
    image: str = Field(min_length=1, description="name:tag, resolved through the image lock")
    user: User
    authorized_keys: tuple[str, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    gpus: Annotated[Gpus, BeforeValidator(Gpus.parse)] = NO_GPUS
    shm_size: Size | None = None
    ulimits: dict[str, Ulimit] = Field(default_factory=dict)
    restart: Literal["no", "always", "unless-stopped", "on-failure"] = "unless-stopped"
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[SecretName, ...] = ()
    jupyter: Jupyter | None = None
    checkpoints: Checkpoints | None = None
    workspace: Workspace = Workspace()
    # sshd runs as the user, so on an unprivileged port inside the container.
    ssh_port: int = Field(default=2222, ge=1024, le=65535)
    # Seconds between Docker's health checks (sshd accepts). A replaced container
    # is "healthy" only after the first one: a lab may check more often.
    health_interval: int = Field(
        default=DEFAULT_HEALTH_INTERVAL, ge=1, le=3600, description="seconds"
    )
    replace: ReplacePolicy = ReplacePolicy()
    # Least privilege: every capability is dropped; add back only what is named.
    cap_add: tuple[Capability, ...] = ()
    read_only: bool = False  # a read-only root filesystem (tmpfs on /tmp and /run)
    canary: Canary = Canary()  # how a rollout measures it

    @field_validator("authorized_keys")
    @classmethod
    def _valid_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for index, key in enumerate(keys):
            why = ssh_public_key_problem(key)
            if why:
                raise ValueError(f"authorized_keys[{index}]: {why}")
        return keys

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name, re.ASCII):
                raise ValueError(f"environment variable name {name!r}")
            if "\0" in env[name] or len(f"{name}={env[name]}".encode()) > MAX_ENV_VALUE:
                raise ValueError(
                    f"a value for {name} without NUL bytes and under {MAX_ENV_VALUE} bytes"
                )
        return env

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not re.fullmatch(LABEL_KEY, key, re.ASCII):
                raise ValueError("label keys of letters, digits and ._/- (no '=')")
            if key.startswith("tfenv."):
                raise ValueError(f"a label key outside tfenv's own 'tfenv.' names, not {key!r}")
            if "\0" in value or "\n" in value:
                raise ValueError(f"a label value on one line for {key!r}")
        return labels

    @field_validator("ulimits")
    @classmethod
    def _ulimit_names(cls, ulimits: dict[str, Ulimit]) -> dict[str, Ulimit]:
        for name in ulimits:
            if name not in ULIMIT_NAMES:
                raise ValueError(f"ulimit name {name!r}, one of {', '.join(sorted(ULIMIT_NAMES))}")
        return ulimits

    def port_address(self, port: PortMapping, publish_address: str) -> str:
        """The host address ``port`` is published on (see :class:`PortMapping`)."""
        if port.address is not None:
            return port.address
        if self.jupyter and port.container == self.jupyter.port:
            return "127.0.0.1"
        return publish_address


ULIMIT_NAMES = frozenset(
    {
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    }
)


def ssh_public_key_problem(key: str) -> str | None:
    """Why ``key`` is not one OpenSSH public key line, or ``None``."""
    parts = key.strip().split(None, 2)
    if len(parts) < 2 or "\n" in key.strip():
        return "one OpenSSH public key line: '<type> <base64> [comment]'"
    key_type, blob = parts[0], parts[1]
    if key_type not in SSH_KEY_TYPES:
        return f"a key type among {', '.join(SSH_KEY_TYPES)}"
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return "base64 key data"
    # The blob starts with its own type as a length-prefixed string.
    size = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if size <= 0 or raw[4 : 4 + size].decode("ascii", "replace") != key_type:
        return f"key data that encodes a {key_type} key"
    return None


class NodeSpec(Strict):
    """Everything tfenv declares about one host. Secrets appear only as references."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    host: str
    gpu_count: int | None = Field(default=None, ge=0)
    nvidia_driver: Driver | None = None
    docker_engine: DockerEngine | None = None
    container_toolkit: ContainerToolkit | None = None
    apt_repositories: AptRepositories = AptRepositories()
    image_lock: ImageLock | None = None
    registries: dict[str, Registry] = Field(default_factory=dict)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    nfs_mounts: dict[str, NfsMount] = Field(default_factory=dict)
    containers: dict[str, Container] = Field(default_factory=dict)
    # name:tag of a small image (pinned in the lock) that proves GPUs are
    # visible inside a container: `docker run --gpus all IMAGE nvidia-smi -L`.
    gpu_check_image: str | None = None
    # Where container ports without an address are published (Jupyter's: 127.0.0.1).
    publish_address: str = "0.0.0.0"
