"""The NVIDIA container toolkit: NVIDIA's repository, four pinned packages, Docker's runtime.

daemon.json is never written by tfenv: ``nvidia-ctk runtime configure`` adds
the ``nvidia`` runtime and keeps every other key the user set. Docker
restarts only when its configuration changed or it does not report the
runtime yet (dockerd finds the toolkit's hook only at startup).
"""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import operation

from tfenv.drift import record
from tfenv.facts.gpu import GpuHostState, gpu_host
from tfenv.operations.apt_repository import keyring_for, signed_repository
from tfenv.operations.failure import fail_host
from tfenv.operations.pinned_packages import pinned_packages

PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
NVIDIA_URL = "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)"
NVIDIA_KEY = "https://nvidia.github.io/libnvidia-container/gpgkey"
LIST_FILE = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
# Older list files for the same packages: two Signed-By values break apt.
REPLACES = (
    "nvidia.github.io/libnvidia-container",
    "nvidia.github.io/nvidia-docker",
    "nvidia.github.io/nvidia-container-runtime",
)
RUNTIME = {"args": [], "path": "nvidia-container-runtime"}


@operation()
def container_toolkit(
    version: str,
    url: str = NVIDIA_URL,
    key: str = NVIDIA_KEY,
    observed: GpuHostState | None = None,
):
    """
    Install the NVIDIA container toolkit at one version and register its Docker runtime.

    + version: the toolkit version, such as ``1.17.3`` (packages ``1.17.3-1``)
    + url: the repository (override for mirrors and air-gapped sites)
    + key: its signing key: a local file or an https URL
    + observed: the host's :class:`~tfenv.facts.gpu.GpuHostState`, if already read

    **Example:**

    .. code:: python

        container_toolkit(name="NVIDIA container toolkit", version="1.17.3")
    """
    state = observed or gpu_host(host)
    if state.docker_error and "permission denied" in state.docker_error.lower():
        # Unreadable runtimes would restart Docker on every run: stop instead.
        yield fail_host(
            f"docker info is not allowed ({state.docker_error}): tfenv reads Docker's "
            "runtimes as root; set _sudo = True for this host"
        )
        return
    if state.daemon_json_error:
        yield fail_host(
            f"/etc/docker/daemon.json is not valid JSON ({state.daemon_json_error}). tfenv "
            "never overwrites it: fix it by hand, then run the deploy again"
        )
        return
    yield from signed_repository._inner(
        list_file=LIST_FILE,
        url=url,
        key=key,
        keyring=keyring_for(key, "nvidia-container-toolkit-keyring"),
        replaces=REPLACES,
        observed=state,
    )
    yield from pinned_packages._inner(
        packages={name: f"{version}-1" for name in PACKAGES},
        preferences_file="/etc/apt/preferences.d/tfenv-nvidia-container-toolkit",
        observed=state,
        area="toolkit",
    )
    current = (state.daemon_json or {}).get("runtimes", {}).get("nvidia")
    configured = current == RUNTIME
    if not configured:
        shown = "absent" if current is None else json.dumps(current, sort_keys=True)
        record("daemon-json", "runtimes.nvidia", json.dumps(RUNTIME, sort_keys=True), shown)
    elif "nvidia" not in (state.docker_runtimes or []):
        running = ", ".join(state.docker_runtimes or []) or state.docker_error or "none"
        record("toolkit", "docker runtimes", "nvidia", running)
    if not configured:
        yield "nvidia-ctk runtime configure --runtime=docker"
    if not configured or "nvidia" not in (state.docker_runtimes or []):
        yield "systemctl restart docker"
    elif state.toolkit_version == version:
        host.noop(f"Docker already runs the nvidia runtime of toolkit {version}")
