"""The Docker engine, from Docker's repository or the distribution's, version pinned."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, operation

from tfenv.drift import record
from tfenv.facts.gpu import GpuHostState, gpu_host
from tfenv.operations.apt_repository import keyring_for, signed_repository
from tfenv.operations.failure import fail_host
from tfenv.operations.pinned_packages import pinned_packages

DOCKER_REPOS = "https://download.docker.com/linux"


def engine_packages(state: GpuHostState, source: str, version: str) -> dict[str, str]:
    """Package name -> apt version (a glob for the distribution's docker.io)."""
    full = ":" in version or "-" in version  # already an apt version
    if source == "distribution":
        # docker.io's versions carry the distribution's suffix (20.10.24+dfsg1-1+deb12u1+b6).
        return {"docker.io": version if full else f"{version}*"}
    if state.os_id not in ("debian", "ubuntu") or not state.os_codename:
        raise OperationError(
            f"{state.os_id or 'unknown OS'} {state.os_version}: Docker's repository is "
            "used for Debian and Ubuntu only"
        )
    apt = version if full else f"5:{version}-1~{state.os_id}.{state.os_version}~{state.os_codename}"
    return {"docker-ce": apt, "docker-ce-cli": apt}


@operation()
def docker_engine(
    version: str,
    source: str = "docker",
    url: str | None = None,
    key: str | None = None,
    observed: GpuHostState | None = None,
):
    """
    Install the Docker engine at a pinned version and keep it running.

    + version: ``27.3.1`` (or a full apt version such as ``5:27.3.1-1~debian.12~bookworm``)
    + source: ``docker`` (Docker's repository) or ``distribution`` (the OS's docker.io)
    + url: Docker's repository, for mirrors (source docker)
    + key: its signing key, a local file or an https URL (source docker)
    + observed: the host's :class:`~tfenv.facts.gpu.GpuHostState`, if already read

    daemon.json is left alone: tfenv never writes it.

    **Example:**

    .. code:: python

        docker_engine(name="Docker engine 27.3.1", version="27.3.1")
    """
    if source not in ("docker", "distribution"):
        raise OperationError(f"source {source!r}: expected docker or distribution")
    state = observed or gpu_host(host)
    try:
        packages = engine_packages(state, source, version)
    except OperationError as exc:
        yield fail_host(str(exc))
        return
    other = "docker-ce" if source == "distribution" else "docker.io"
    if state.installed(other):
        yield fail_host(
            f"{other} is installed but the declared source is {source!r}: remove it first "
            f"(apt-get remove {other}); tfenv does not swap engines under running containers"
        )
        return
    if source == "docker":
        key = key or f"{DOCKER_REPOS}/{state.os_id}/gpg"
        yield from signed_repository._inner(
            list_file="/etc/apt/sources.list.d/docker.list",
            url=url or f"{DOCKER_REPOS}/{state.os_id}",
            key=key,
            keyring=keyring_for(key, "docker"),
            suite=state.os_codename,
            components=("stable",),
            observed=state,
        )
    yield from pinned_packages._inner(
        packages=packages,
        preferences_file="/etc/apt/preferences.d/tfenv-docker",
        observed=state,
        area="docker",
    )
    if state.docker_runtimes is None:  # not answering: just installed, or stopped
        record("docker", "running", "running", state.docker_error or "not answering")
        yield "systemctl enable --now docker"
    else:
        host.noop(f"Docker engine {version} ({source}) installed, pinned and running")
