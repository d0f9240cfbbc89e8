"""The lab registry: Debian's docker-registry with htpasswd auth and TLS from the lab CA.

It runs as a container on the lab network, where lab hosts reach it as
``registry.lab.test:5000`` (the name the lab's data and lock use), and is
published on ``127.0.0.1`` for this machine (pushes, ``tfenv lock``). Its
password lives in ``.lab/registry/password`` (0600); the lab's data refers to
that file as a secret, like any private registry's password.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from tfenv.images.registry import RegistryClient, RegistryError
from tfenv.lab.ca import ensure_ca, issue_server_cert
from tfenv.lab.images import build_image
from tfenv.lab.run import LabError, run
from tfenv.lab.service import Found, ensure_service, free_port, published_port
from tfenv.model.secrets import SecretValue

ALIAS = "registry.lab.test"  # .test is reserved (RFC 2606): it never leaves the lab
PORT = 5000
USERNAME = "tfenv"
CONFIG_DIR = "/etc/tfenv-registry"
DOCKERFILE = f"""\
FROM tfenv-lab/base:bookworm
RUN apt-get update \\
 && apt-get install -y --no-install-recommends docker-registry \\
 && rm -rf /var/lib/apt/lists/*
EXPOSE {PORT}
CMD ["/usr/bin/docker-registry", "serve", "{CONFIG_DIR}/config.yml"]
"""
CONFIG = f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :{PORT}
  tls:
    certificate: {CONFIG_DIR}/registry.crt
    key: {CONFIG_DIR}/registry.key
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: tfenv-lab
    path: {CONFIG_DIR}/htpasswd
"""


@dataclass(frozen=True)
class LabRegistry:
    """Where the lab registry is and how to log in to it."""

    container: str
    port: int  # published on 127.0.0.1
    directory: Path  # config, certificate, htpasswd, password

    host: str = f"{ALIAS}:{PORT}"  # as lab hosts (and the lab's lock) name it
    username: str = USERNAME

    @property
    def local(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.directory / "password"

    @property
    def ca_file(self) -> Path:
        return self.directory.parent / "ca" / "ca.crt"

    def password(self) -> SecretValue:
        return SecretValue("lab_registry_password", self.password_file.read_text().strip())

    def client(self) -> RegistryClient:
        return RegistryClient(
            self.local, username=self.username, password=self.password(), ca_file=self.ca_file
        )


def registry_image() -> str:
    return build_image(
        "tfenv-lab/registry", DOCKERFILE, what="the lab registry image (Debian's docker-registry)"
    )


def _write_config(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    password_file = directory / "password"
    if not password_file.exists():
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    password = password_file.read_text().strip().encode()
    htpasswd = directory / "htpasswd"
    current = htpasswd.read_text().strip().split(":", 1) if htpasswd.exists() else []
    if len(current) != 2 or not bcrypt.checkpw(password, current[1].encode()):
        # docker-registry accepts bcrypt entries only.
        entry = bcrypt.hashpw(password, bcrypt.gensalt(rounds=10)).decode()
        htpasswd.write_text(f"{USERNAME}:{entry}\n")
    (directory / "config.yml").write_text(CONFIG)


def _wait_until_ready(registry: LabRegistry, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    client = registry.client()
    while True:
        try:
            client.check()
            return
        except RegistryError as exc:
            if time.monotonic() > deadline:
                logs = run(["docker", "logs", "--tail", "20", registry.container], check=False)
                raise LabError(
                    f"the lab registry does not answer on {registry.local} ({exc}). Log tail:\n"
                    f"{logs.stdout}{logs.stderr}\nTry: tfenv lab down && tfenv lab up"
                ) from None
            time.sleep(0.3)


def ensure_registry(
    *, lab_name: str, label: str, network: str, lab_dir: Path, found: Found | None
) -> LabRegistry:
    """Start (or keep) the lab registry container; ``found`` is what ``docker ps`` saw."""
    directory = lab_dir / "registry"
    ca = ensure_ca(lab_dir / "ca", lab_name)
    _write_config(directory)
    issue_server_cert(
        ca,
        [ALIAS, "127.0.0.1", "localhost"],
        directory / "registry.crt",
        directory / "registry.key",
    )
    container = f"{lab_name}-registry"
    (directory / "data").mkdir(exist_ok=True)
    ensure_service(
        container=container,
        role="registry",
        alias=ALIAS,
        image=registry_image(),
        found=found,
        lab_label=label,
        lab_dir=lab_dir,
        network=network,
        run_args=[
            "-v",
            f"{directory.resolve()}:{CONFIG_DIR}:ro",
            # Blobs live in the lab directory, like its keys: a lab brought up
            # again after `down` pushes nothing it already had.
            "-v",
            f"{(directory / 'data').resolve()}:/var/lib/docker-registry",
            # A fixed host port: a registry stopped and started again keeps it.
            "-p",
            f"127.0.0.1:{free_port()}:{PORT}",
        ],
        what=f"the lab registry ({ALIAS}:{PORT}, htpasswd auth, TLS)",
    )
    registry = LabRegistry(container, published_port(container, PORT), directory)
    _wait_until_ready(registry)
    return registry
