"""Turn one host's pyinfra data into a :class:`NodeSpec`, or every problem with it.

No network, no SSH: only the data, the image lock file, and the secret
references' presence and permissions on the control machine.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tfenv.images.lock import ImageLock, read_lock
from tfenv.images.reference import pinned_tag_problem
from tfenv.model.problems import Problem, SpecError, format_problems
from tfenv.model.secrets import SecretRef, check_secret
from tfenv.model.spec import (
    CONTAINER_NAME,
    NFS_NAME,
    SECRET_NAME,
    Address,
    AptRepositories,
    Container,
    ContainerToolkit,
    DockerEngine,
    Driver,
    NfsMount,
    NodeSpec,
    Registry,
    Strict,
)
from tfenv.paths import resolve_path


class DeclaredData(Strict):
    """The tfenv keys of pyinfra host data, as written in group_data/inventories."""

    gpu_count: int | None = Field(default=None, ge=0)
    nvidia_driver: Driver | None = None
    docker_engine: DockerEngine | None = None
    container_toolkit: ContainerToolkit | None = None
    apt_repositories: AptRepositories = AptRepositories()
    image_lock: str | None = None
    registries: dict[str, Registry] = Field(default_factory=dict)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    nfs_mounts: dict[str, NfsMount] = Field(default_factory=dict)
    containers: dict[str, Container] = Field(default_factory=dict)
    gpu_check_image: str | None = None
    publish_address: Address = "0.0.0.0"


TFENV_KEYS = frozenset(DeclaredData.model_fields)
# Where a value must never be echoed back: it might be a pasted secret
# (or a private key pasted where a public one belongs).
NO_ECHO = ("secrets", "password_secret", "token_secret", "env", "authorized_keys", "build_args")
REGISTRY_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?", re.ASCII)


def load(host: str, data: Mapping[str, Any], base_dir: Path) -> NodeSpec:
    """The NodeSpec for ``host``, or :class:`SpecError` listing every problem.

    ``base_dir`` is where relative paths (image lock, secret files) are
    resolved: the directory pyinfra runs from.
    """
    problems = list(_unknown_top_level_keys(host, data))
    declared_input = {key: data[key] for key in TFENV_KEYS if key in data}
    try:
        declared = DeclaredData.model_validate(declared_input)
    except ValidationError as exc:
        problems.extend(from_pydantic(host, exc))
        raise SpecError(problems) from None

    lock = None
    if declared.image_lock is not None:
        lock_path = resolve_path(declared.image_lock, base_dir)
        lock, issues = read_lock(lock_path)
        for issue in issues:
            field = f"image_lock ({lock_path})" + (f": {issue.field}" if issue.field else "")
            problems.append(Problem(host, field, issue.expected, issue.got))

    problems.extend(_cross_checks(host, declared, lock, base_dir))
    if problems:
        raise SpecError(problems)
    fields = {name: getattr(declared, name) for name in TFENV_KEYS - {"image_lock"}}
    return NodeSpec(host=host, image_lock=lock, **fields)


def _unknown_top_level_keys(host: str, data: Mapping[str, Any]):
    """Typos of tfenv's own keys. Other keys belong to pyinfra or other deploys."""
    for key in data:
        if key in TFENV_KEYS or not isinstance(key, str):
            continue
        close = difflib.get_close_matches(key, sorted(TFENV_KEYS), n=1, cutoff=0.8)
        if key.startswith("tfenv_") or close:
            hint = f"did you mean {close[0]!r}" if close else "a tfenv key"
            yield Problem(host, key, f"a known key ({hint}?)", "unknown key")


def _render_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a mapping key's own error
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _allowed_fields(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    """Field names of the model found at ``loc`` (for did-you-mean hints)."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        else:  # a dict value or tuple item: step into it
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else None
        # unwrap Optional[...] / X | None
        while typing.get_origin(current) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[0] if len(args) == 1 else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def from_pydantic(
    host: str, exc: ValidationError, root: type[BaseModel] = DeclaredData
) -> list[Problem]:
    """One problem per validation error of ``root`` (a model of declared data)."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        field = _render_loc(loc)
        kind = err["type"]
        value = err.get("input")
        no_echo = any(str(part) in NO_ECHO for part in loc) or isinstance(value, dict)
        got: str | None = None if no_echo else _short(value)
        if kind == "extra_forbidden":
            allowed = _allowed_fields(loc[:-1], root)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            expected = "a known key" + (f" (did you mean {close[0]!r}?)" if close else "")
            if allowed:
                expected += f"; known keys: {', '.join(allowed)}"
            got = "unknown key"
        elif kind == "missing":
            expected, got = "this required field", "nothing"
        else:
            expected = err["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
            expected = expected[0].lower() + expected[1:] if expected else kind
        problems.append(Problem(host, field, expected, got))
    return problems


def _cross_checks(host: str, declared: DeclaredData, lock: ImageLock | None, base_dir: Path):
    yield from _check_names(host, declared)
    for name, ref in declared.secrets.items():
        why = check_secret(name, ref, base_dir)
        if why:
            yield Problem(host, f"secrets.{name}", why)

    def secret_exists(field: str, name: str):
        if name not in declared.secrets:
            known = ", ".join(sorted(declared.secrets)) or "none declared"
            # The name itself is not echoed: a pasted value would end up in the log.
            yield Problem(host, field, f"the name of a secret declared in 'secrets' ({known})")

    secret_files = {
        resolve_path(ref.file, base_dir).resolve()
        for ref in declared.secrets.values()
        if ref.file is not None
    }
    for registry, spec in declared.registries.items():
        yield from secret_exists(f"registries.{registry}.password_secret", spec.password_secret)
        if spec.ca_file is not None:
            why = _public_file_problem(resolve_path(spec.ca_file, base_dir), CA_KINDS, secret_files)
            if why:
                yield Problem(
                    host,
                    f"registries.{registry}.ca_file",
                    "a PEM file of the CA that signed the registry's certificate",
                    why,
                )
    for repo_name in ("cuda", "nvidia_container_toolkit", "docker"):
        repo = getattr(declared.apt_repositories, repo_name)
        if repo is None or repo.key.startswith(("https://", "http://")):
            continue
        why = _public_file_problem(resolve_path(repo.key, base_dir), KEY_KINDS, secret_files)
        if why:
            yield Problem(
                host,
                f"apt_repositories.{repo_name}.key",
                "an https URL or the path of the repository's public signing key "
                "(ASCII-armored or a binary keyring)",
                why,
            )

    if declared.gpu_check_image is not None:
        yield from _check_locked_image(host, "gpu_check_image", declared.gpu_check_image, lock)
    for name, container in declared.containers.items():
        where = f"containers.{name}"
        yield from _check_locked_image(host, f"{where}.image", container.image, lock)
        for index, secret in enumerate(container.secrets):
            yield from secret_exists(f"{where}.secrets[{index}]", secret)
        if container.jupyter:
            yield from secret_exists(
                f"{where}.jupyter.token_secret", container.jupyter.token_secret
            )
        known = ", ".join(sorted(declared.nfs_mounts)) or "none declared"
        for field, mount in (
            ("checkpoints.nfs", container.checkpoints.nfs if container.checkpoints else None),
            ("workspace.nfs", container.workspace.nfs),
        ):
            if mount is not None and mount not in declared.nfs_mounts:
                yield Problem(
                    host,
                    f"{where}.{field}",
                    f"the name of an entry in nfs_mounts ({known})",
                    _short(mount),
                )
        yield from _check_gpus(host, where, container, declared.gpu_count)
        if container.checkpoints:
            path = container.checkpoints.path.rstrip("/")
            home = f"/home/{container.user.name}"
            taken = (home, "/etc", "/run", "/proc", "/sys", "/dev", "/usr", "/bin", "/sbin")
            if any(path == t or path.startswith(t + "/") or home.startswith(path + "/")
                   for t in taken):  # fmt: skip
                yield Problem(
                    host,
                    f"{where}.checkpoints.path",
                    f"a directory of its own in the container, outside {home} (the home) "
                    "and the system's directories, such as /checkpoints",
                    _short(container.checkpoints.path),
                )
        for index, port in enumerate(container.ports):
            if port.container == 22 and "NET_BIND_SERVICE" not in container.cap_add:
                yield Problem(
                    host,
                    f"{where}.ports[{index}].container",
                    f"sshd's port inside the container, {container.ssh_port} (ssh_port): sshd "
                    "runs as the user, so on an unprivileged port",
                    "22",
                )
    yield from _check_ports(host, declared.containers, declared.publish_address)


CA_KINDS = ((b"-----BEGIN CERTIFICATE-----",), "a PEM certificate")
# An armored OpenPGP public key, or a binary keyring (public-key packet tags).
KEY_KINDS = ((b"-----BEGIN PGP PUBLIC KEY BLOCK-----", b"\x98", b"\x99", b"\xc6"), "a public key")
MAX_PUBLIC_FILE = 1024 * 1024


def _public_file_problem(path: Path, kinds: tuple, secret_files: set[Path]) -> str | None:
    """Why ``path`` is not a readable public file of one of ``kinds``, or None.
    Never shows the content (a secret pasted into the wrong file stays unseen)."""
    starts, what = kinds
    try:
        if path.resolve() in secret_files:
            return f"a file that is not one of the declared secrets ({path} is)"
        if not path.is_file():
            return f"no file at {path}"
        if path.stat().st_size > MAX_PUBLIC_FILE:
            return f"{path} is larger than {MAX_PUBLIC_FILE} bytes"
        head = path.read_bytes()[:64].lstrip()
    except OSError as exc:
        return f"{path} cannot be read ({type(exc).__name__})"
    if not head.startswith(starts):
        return f"{path} does not hold {what} (its content is not shown)"
    return None


def _check_locked_image(host: str, field: str, image: str, lock: ImageLock | None):
    why = pinned_tag_problem(image)
    if why:
        yield Problem(host, field, why, _short(image))
    elif lock is None:
        yield Problem(host, "image_lock", f"a lock file path, since {field} names an image")
    elif lock.resolve(image) is None:
        yield Problem(
            host, field, f"an image pinned in {lock.path.name} (run: tfenv lock)", _short(image)
        )


# The names of declared entries: (section, grammar, what is expected, echo the name?)
NAME_RULES = (
    ("secrets", SECRET_NAME, "a secret name of lowercase letters, digits and '_'", False),
    ("containers", CONTAINER_NAME, "a Docker container name (letters, digits, '_', '.', '-')",
     True),
    ("registries", REGISTRY_HOST.pattern, "a registry host[:port]", True),
    ("nfs_mounts", NFS_NAME, "an NFS mount name of lowercase letters, digits, '_' and '-'",
     False),
)  # fmt: skip


def _check_names(host: str, declared: DeclaredData):
    for section, grammar, expected, echo in NAME_RULES:
        for name in getattr(declared, section):
            if not re.fullmatch(grammar, name, re.ASCII):
                got = _short(name) if echo else None
                shown = name if name.isprintable() and len(name) <= 60 else _short(name)
                yield Problem(host, f"{section}.{shown}", expected, got)
    mount_points: dict[str, str] = {}
    for name, mount in declared.nfs_mounts.items():
        if mount.mount_point in mount_points:
            yield Problem(
                host,
                f"nfs_mounts.{name}.mount_point",
                f"a mount point not used by nfs_mounts.{mount_points[mount.mount_point]}",
                _short(mount.mount_point),
            )
        mount_points.setdefault(mount.mount_point, name)


def _check_gpus(host: str, where: str, container: Container, gpu_count: int | None):
    gpus = container.gpus
    if gpus.highest_index() is None:  # none or all
        return
    if gpu_count is None:
        yield Problem(host, "gpu_count", f"the host's GPU count, since {where}.gpus names GPUs")
        return
    if gpus.kind == "count" and gpus.count > gpu_count:
        yield Problem(
            host, f"{where}.gpus", f"at most {gpu_count} GPUs (gpu_count)", str(gpus.count)
        )
    for index in gpus.devices:
        if index >= gpu_count:
            yield Problem(
                host,
                f"{where}.gpus",
                f"GPU indices 0..{gpu_count - 1} (gpu_count is {gpu_count})",
                str(index),
            )


def _overlaps(a: str, b: str) -> bool:
    """Two bind addresses collide if equal or either is the wildcard of its family."""
    if a == b:
        return True
    try:
        ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    return ia.version == ib.version and (ia.is_unspecified or ib.is_unspecified)


def _check_ports(host: str, containers: Mapping[str, Container], publish_address: str):
    seen: list[tuple[str, int, str, str, str]] = []  # address, port, protocol, owner, field
    for name, container in containers.items():
        for index, port in enumerate(container.ports):
            field = f"containers.{name}.ports[{index}]"
            bound = container.port_address(port, publish_address)
            for address, number, protocol, _owner, other_field in seen:
                if number == port.host and protocol == port.protocol and _overlaps(address, bound):
                    yield Problem(
                        host,
                        f"{field}.host",
                        f"a host port not already published by {other_field}",
                        f"{bound}:{port.host}/{port.protocol}",
                    )
                    break
            seen.append((bound, port.host, port.protocol, name, field))


def warning_text(specs: Iterable[NodeSpec], prefix: str) -> str:
    """Every host's :func:`warnings`, folded like problems, each line with ``prefix``
    ("" when there is none)."""
    cautions = [w for spec in specs for w in warnings(spec)]
    return prefix + format_problems(cautions).replace("\n", "\n" + prefix) if cautions else ""


def warnings(spec: NodeSpec) -> list[Problem]:
    """Declared states that work but that a careful operator should know about."""
    found = []
    for name, container in sorted(spec.containers.items()):
        for index, port in enumerate(container.ports):
            address = container.port_address(port, spec.publish_address)
            jupyter = container.jupyter and port.container == container.jupyter.port
            if jupyter and not ipaddress.ip_address(address).is_loopback:
                found.append(Problem(
                    spec.host,
                    f"containers.{name}.ports[{index}]",
                    "Jupyter published on 127.0.0.1 (reach it through an SSH tunnel): "
                    "it serves plain HTTP, so its token crosses the network in clear",
                    f"published on {address}",
                ))  # fmt: skip
    return found
