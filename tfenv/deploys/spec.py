"""The NodeSpec of the host a deploy is running for."""

from __future__ import annotations

import os
from pathlib import Path

from pyinfra.api.exceptions import DeployError

from tfenv.model.load import load
from tfenv.model.problems import SpecError, format_problems
from tfenv.model.secrets import SecretUnavailable, SecretValue, read_secret
from tfenv.model.spec import NodeSpec
from tfenv.paths import resolve_path


def host_spec(host, base_dir: Path | None = None) -> NodeSpec:
    """Load and validate ``host``'s declared data; a DeployError lists every problem."""
    try:
        return load(host.name, host.data.dict(), base_dir or Path(os.getcwd()))
    except SpecError as exc:
        raise DeployError(
            f"{host.name}: invalid declared data:\n{format_problems(exc.problems)}"
        ) from None


def secret_value(spec: NodeSpec, name: str, base_dir: Path | None = None) -> SecretValue:
    """The value of the declared secret ``name`` (checked readable by ``host_spec``)."""
    try:
        return read_secret(name, spec.secrets[name], base_dir or Path(os.getcwd()))
    except SecretUnavailable as exc:
        raise DeployError(f"{spec.host}: {exc}") from None


def registry_inputs(
    spec: NodeSpec, base_dir: Path | None = None
) -> tuple[dict[str, tuple[str, SecretValue]], dict[str, str]]:
    """(logins, CA certificates) for :func:`tfenv.operations.registry_login.registry_logins`."""
    base = base_dir or Path(os.getcwd())
    logins, cas = {}, {}
    for registry, declared in spec.registries.items():
        logins[registry] = (declared.username, secret_value(spec, declared.password_secret, base))
        if declared.ca_file:
            cas[registry] = resolve_path(declared.ca_file, base).read_text()
    return logins, cas


def pinned_image(spec: NodeSpec, reference: str) -> str:
    """``name@sha256:...`` that a container declaring ``reference`` runs (through the
    lock, and what a completed rollout promoted in its place: see the lock's ``promoted``)."""
    locked = spec.image_lock.resolve(reference) if spec.image_lock else None
    if locked is None:  # the model checked it: only a lock edited mid-run gets here
        raise DeployError(f"{spec.host}: {reference} is not pinned in the lock; run tfenv lock")
    return locked.pinned
