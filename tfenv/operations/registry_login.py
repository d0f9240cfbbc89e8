"""Private registry logins: credentials in a root-only Docker client config.

``docker login`` would put the password in a command line or through a pipe
in a shell command that pyinfra prints at ``-vvv``. tfenv instead writes the
Docker client configuration that ``docker login`` would have written,
``/etc/tfenv/docker/config.json`` (root, 0600, in a 0700 directory), as a
sealed file: compared by seal, never read back. Every tfenv pull runs
``docker --config /etc/tfenv/docker pull``; root's own ``~/.docker`` is never
touched. A registry's CA certificate goes where dockerd looks for it,
``/etc/docker/certs.d/REGISTRY/ca.crt``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from tfenv.drift import record
from tfenv.facts.tf_node import TfNodeState, tf_node
from tfenv.layout import DOCKER_CONFIG_DIR
from tfenv.model.secrets import SecretValue
from tfenv.operations.config_file import write_file
from tfenv.operations.sealed_file import (
    remove_sealed_file,
    sealed_file_difference,
    write_sealed_file,
)

DOCKER_CONFIG = f"{DOCKER_CONFIG_DIR}/config.json"
CERTS_DIR = "/etc/docker/certs.d"


def docker_config(logins: Mapping[str, tuple[str, SecretValue | str]]) -> SecretValue:
    """The client config ``docker login`` would write for ``logins``, as a SecretValue."""
    auths = {}
    for registry in sorted(logins):
        username, password = logins[registry]
        value = password.reveal() if isinstance(password, SecretValue) else password
        auths[registry] = {"auth": base64.b64encode(f"{username}:{value}".encode()).decode()}
    return SecretValue("docker_config", json.dumps({"auths": auths}, indent=1) + "\n")


@operation()
def registry_logins(
    logins: Mapping[str, tuple[str, SecretValue | str]],
    ca_certificates: Mapping[str, str] | None = None,
    observed: TfNodeState | None = None,
):
    """
    Log the host's tfenv pulls in to private registries, and trust their CAs.

    + logins: registry (``host[:port]``) -> (username, password as a SecretValue)
    + ca_certificates: registry -> PEM text of the CA that signed its certificate
    + observed: the host's :class:`~tfenv.facts.tf_node.TfNodeState`, if already read

    Only the declared registries stay in the config: a registry removed from
    the data loses its login on the next run.

    **Example:**

    .. code:: python

        registry_logins(
            name="Registry logins",
            logins={"registry.example.internal": ("robot", read_secret(...))},
        )
    """
    for registry in logins:
        if not registry or "/" in registry or registry.startswith("-"):
            raise OperationError(f"registry {registry!r}: expected host[:port]")
    state = observed or tf_node(host)
    if logins:
        config = docker_config(logins)
        why = sealed_file_difference(DOCKER_CONFIG, config, "0600", 0, 0, state.sealed)
        if why:
            record("registry", DOCKER_CONFIG, "written as declared", why)
            yield from write_sealed_file(DOCKER_CONFIG, config, "0600", 0, 0)
        else:
            host.noop(f"logins for {', '.join(sorted(logins))} are in place")
    elif DOCKER_CONFIG in state.sealed:
        record("registry", DOCKER_CONFIG, "absent (no login declared)", "present")
        yield from remove_sealed_file(DOCKER_CONFIG)
    for registry, pem in sorted((ca_certificates or {}).items()):
        path = f"{CERTS_DIR}/{registry}/ca.crt"
        if state.certs.get(path) == hashlib.sha256(pem.encode()).hexdigest():
            host.noop(f"{path} is up to date")
            continue
        found = "another CA" if path in state.certs else "absent"
        record("registry", path, "the declared CA certificate", found)
        yield StringCommand("install", "-d", "-m", "0755", QuoteString(f"{CERTS_DIR}/{registry}"))
        yield from write_file(path, pem)
