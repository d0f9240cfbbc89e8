"""tfenv's own container operation: declared spec in, drift detected field by field.

pyinfra's ``docker.container`` never compares a running container with its
spec. This one does (see :mod:`tfenv.containers.drift`), recreates only on a
real difference, and pulls the new image *before* touching the old
container: a failed pull leaves it running. A new container that fails to
start gives way to the previous one again.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyinfra import host, logger
from pyinfra.api import QuoteString, StringCommand, operation

from tfenv.containers.desired import (
    HOST_KEYS_DIR,
    DesiredContainer,
    authorized_keys_path,
    run_arguments,
    secret_path,
)
from tfenv.containers.drift import Drift, drift
from tfenv.facts.tf_node import TfNodeState, tf_node
from tfenv.model.secrets import SecretValue
from tfenv.operations.image import pull_command
from tfenv.operations.sealed_file import (
    remove_sealed_file,
    sealed_file_difference,
    write_sealed_file,
)

PREVIOUS = ".tfenv-previous"  # the old container, kept stopped until the new one runs


def _prepare(desired: DesiredContainer) -> list[StringCommand]:
    host_keys = f"{HOST_KEYS_DIR}/{desired.name}/ssh-host-keys"
    commands = [StringCommand("install", "-d", "-m", "0700", QuoteString(host_keys))]
    if desired.checkpoint_source:
        mount_point = desired.checkpoint_source.rsplit("/", 1)[0]
        message = (
            f"tfenv: {mount_point} is not mounted: {desired.name} is not started, so it never "
            "writes checkpoints to the local disk. Check the NFS mount (systemctl status, the "
            "server), then run the deploy again."
        )
        owner = ["-o", str(desired.uid), "-g", str(desired.gid)]
        commands += [
            StringCommand("mountpoint", "-q", QuoteString(mount_point), "||",
                          "{", "echo", QuoteString(message), ">&2;", "exit", "1;", "}"),
            StringCommand("install", "-d", *owner, QuoteString(desired.checkpoint_source)),
        ]  # fmt: skip
    return commands


def _replace(desired: DesiredContainer) -> StringCommand:
    name, old = QuoteString(desired.name), QuoteString(desired.name + PREVIOUS)
    restore = QuoteString(
        f"tfenv: the new {desired.name} did not start; the previous container runs again"
    )
    return StringCommand(
        "docker", "rm", "-f", old, ">/dev/null", "2>&1;",
        "docker", "stop", "-t", "30", name, ">/dev/null", "&&",
        "docker", "rename", name, old, "&&",
        "{", "docker", "run", "-d", *run_arguments(desired), "||",
        "{", "docker", "rm", "-f", name, ">/dev/null", "2>&1;", "docker", "rename", old, name, ";",
        "docker", "start", name, ">/dev/null;", "echo", restore, ">&2;", "exit", "1;", "};", "}",
        "&&", "docker", "rm", old, ">/dev/null",
    )  # fmt: skip


_reported: set[tuple[str, str, tuple[Drift, ...]]] = set()


def _report(name: str, differences: list[Drift]) -> None:
    """Say which fields differ, once per run (op bodies run at planning and again at
    execution, or only at execution with -y)."""
    key = (host.name, name, tuple(differences))
    if key in _reported:
        return
    _reported.add(key)
    lines = "\n".join(f"      {d}" for d in differences)
    host.log_styled(
        f"{name}: recreating, {len(differences)} field(s) differ:\n{lines}",
        fg="yellow",
        log_func=logger.info,
    )


@operation()
def tf_container(desired: DesiredContainer, observed: TfNodeState | None = None):
    """
    Run ``desired`` as declared: create it, leave it, start it, or recreate it on drift.

    + desired: the resolved container (:func:`tfenv.containers.desired.desired_container`)
    + observed: the host's TfNodeState, if already read

    **Example:**

    .. code:: python

        tf_container(name="Container dev", desired=desired_container(...))
    """
    state = observed or tf_node(host)
    current = state.containers.get(desired.name)
    pull = [] if state.has_image(desired.image) else [pull_command(desired.image)]
    if current is None:
        yield from _prepare(desired)
        yield from pull
        yield StringCommand("docker", "run", "-d", *run_arguments(desired), ">/dev/null")
        return
    differences = drift(desired, current)
    if differences:
        _report(desired.name, differences)
        yield from _prepare(desired)
        yield from pull  # before the old container stops: a failed pull leaves it running
        yield _replace(desired)
    elif not current.running:
        yield StringCommand("docker", "start", QuoteString(desired.name), ">/dev/null")
    else:
        host.noop(f"{desired.name} runs as declared")


@operation()
def container_files(
    desired: DesiredContainer,
    secrets: Mapping[str, SecretValue],
    authorized_keys: str,
    observed: TfNodeState | None = None,
):
    """
    Write a container's secret files and authorized keys on the host.

    + desired: the resolved container
    + secrets: secret name -> value, for every secret it mounts
    + authorized_keys: the authorized_keys text sshd reads
    + observed: the host's TfNodeState, if already read

    Secrets: ``/etc/tfenv/secrets/CONTAINER/NAME``, mode 0400, owned by the
    container user, in a root-only directory; compared by seal. A secret no
    longer declared is removed.

    **Example:**

    .. code:: python

        container_files(name="Files of dev", desired=d, secrets={...}, authorized_keys="...")
    """
    state = observed or tf_node(host)
    commands = []
    wanted = {secret_path(desired.name, name): value for name, value in secrets.items()}
    for path, value in sorted(wanted.items()):
        why = sealed_file_difference(path, value, "0400", desired.uid, desired.gid, state.sealed)
        if why:
            commands += write_sealed_file(path, value, "0400", desired.uid, desired.gid)
    prefix = secret_path(desired.name, "")
    for path in sorted(state.sealed):
        if path.startswith(prefix) and path not in wanted:
            commands += remove_sealed_file(path)
    keys_path = authorized_keys_path(desired.name)
    keys = authorized_keys.encode()
    if sealed_file_difference(keys_path, keys, "0644", 0, 0, state.sealed):
        commands += write_sealed_file(keys_path, keys, "0644", 0, 0, directory_mode="0755")
    if not commands:
        host.noop(f"{desired.name}: {len(wanted)} secret file(s) and authorized keys in place")
    yield from commands
