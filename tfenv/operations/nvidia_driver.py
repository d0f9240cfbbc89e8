"""The NVIDIA driver from NVIDIA's CUDA repository, pinned to one exact version.

OS-aware (Debian 12, Ubuntu 22.04 and 24.04 from the GpuHost fact): the
repository path and package names differ, the pinning does not. Guards
against the pains users hit: Secure Boot rejecting unsigned DKMS modules
(stop before touching anything), missing headers for the running kernel,
nouveau holding the GPU, unattended-upgrades moving the driver, a branch
meta-package pulling a newer branch (exact pins at priority 1001).
Whether a reboot is due is :func:`reboot_reasons`; the deploy acts on it.
"""

from __future__ import annotations

from collections.abc import Callable

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from tfenv.drift import record
from tfenv.facts.gpu import GpuHostState, gpu_host
from tfenv.operations.apt_repository import keyring_for, signed_repository
from tfenv.operations.config_file import write_file
from tfenv.operations.failure import fail_host
from tfenv.operations.pinned_packages import APT_INSTALL, pinned_packages

CUDA_REPOS = "https://developer.download.nvidia.com/compute/cuda/repos"
CUDA_KEY_ID = "3bf863cc"  # NVIDIA's signing key for deb repositories since 2022
DISTROS = {("debian", "12"): "debian12", ("ubuntu", "22.04"): "ubuntu2204",
           ("ubuntu", "24.04"): "ubuntu2404"}  # fmt: skip
NOUVEAU_FILE = "/etc/modprobe.d/tfenv-blacklist-nouveau.conf"
NOUVEAU = (
    "# Managed by tfenv: the NVIDIA driver needs the GPU.\n"
    "blacklist nouveau\noptions nouveau modeset=0\n"
)
UNATTENDED_FILE = "/etc/apt/apt.conf.d/51tfenv-nvidia-no-unattended-upgrades"
UNATTENDED = (
    "// Managed by tfenv: the NVIDIA driver changes only when its declared version does.\n"
    'Unattended-Upgrade::Package-Blacklist { "nvidia-"; "libnvidia-"; "cuda-drivers"; };\n'
)


def distro(state: GpuHostState) -> str:
    try:
        return DISTROS[(state.os_id, state.os_version)]
    except KeyError:
        supported = ", ".join(f"{os} {version}" for os, version in DISTROS)
        raise OperationError(
            f"{state.os_id or 'unknown OS'} {state.os_version}: the NVIDIA driver operation "
            f"supports {supported}"
        ) from None


def driver_packages(state: GpuHostState, version: str, flavour: str) -> dict[str, str]:
    """The packages (name -> exact apt version) of one driver version on this host's OS."""
    branch = version.split(".")[0]
    if distro(state) == "debian12":
        deb = f"{version}-1"
        module = "nvidia-kernel-open-dkms" if flavour == "open" else "nvidia-kernel-dkms"
        names = ("nvidia-driver", module, "nvidia-smi", "libnvidia-ml1", "nvidia-persistenced")
        return {name: deb for name in names}
    deb = f"{version}-0ubuntu1"
    suffix = "-open" if flavour == "open" else ""
    names = (
        f"nvidia-driver-{branch}{suffix}",
        f"nvidia-dkms-{branch}{suffix}",
        f"nvidia-utils-{branch}",
        f"libnvidia-compute-{branch}",
    )
    return {name: deb for name in names}


def reboot_reasons(
    state: GpuHostState, version: str, kernel_modules: str | None = None
) -> list[str]:
    """Why this host must reboot before its GPUs can be used as declared (empty: none).

    ``kernel_modules`` (open or proprietary), when given, must match the loaded module.
    """
    reasons = []
    if state.driver_state == "mismatch":
        reasons.append(
            f"driver/library mismatch: kernel module {state.module_version or '?'}, "
            f"library {state.nvml_version or '?'}; reboot required"
        )
    elif state.module_version is None and state.driver_state != "absent":
        reasons.append("driver installed but no NVIDIA kernel module loaded; reboot required")
    elif state.module_version is not None and state.module_version != version:
        reasons.append(f"kernel module {state.module_version} loaded, {version} declared")
    elif kernel_modules and state.module_flavour and state.module_flavour != kernel_modules:
        reasons.append(f"{state.module_flavour} kernel module loaded, {kernel_modules} declared")
    if state.nouveau_loaded:
        reasons.append("nouveau is loaded (blacklisted now, gone after a reboot)")
    return reasons


def driver_in_rollout(state: GpuHostState, declared: str, kernel_modules: str) -> tuple[str, str]:
    """The version this host keeps, and the driver rollout that put it there ("" when
    none): a host a running ``tfenv rollout --driver`` moved (its record says from the
    declared version to another, and that one is installed) stays on it until the
    rollout completes (and writes the new version into the group data) or rolls back."""
    marker = state.driver_rollout or {}
    to, rollout = str(marker.get("to", "")), str(marker.get("id", ""))
    if not rollout or marker.get("from") != declared or not to or to == declared:
        return declared, ""
    try:
        packages = driver_packages(state, to, kernel_modules)
    except OperationError:
        return declared, ""
    if all(state.installed(name) == version for name, version in packages.items()):
        return to, rollout
    return declared, ""


def reboot_after_install(state: GpuHostState, version: str, kernel_modules: str) -> list[str]:
    """Why the host will need a reboot once driver ``version`` is installed ([]: it will
    not): the loaded module stays what it is until the next boot."""
    if state.driver_state == "absent" and state.module_version is None:
        return []  # a first install: nothing of the user's runs on a GPU yet
    reasons = []
    if state.module_version is None:
        reasons.append("no NVIDIA kernel module loaded")
    elif state.module_version != version:
        reasons.append(f"kernel module {state.module_version} loaded, {version} declared")
    elif state.module_flavour and state.module_flavour != kernel_modules:
        reasons.append(f"{state.module_flavour} kernel module loaded, {kernel_modules} declared")
    if state.nouveau_loaded:
        reasons.append("nouveau is loaded")
    return reasons


@operation()
def nvidia_driver(
    version: str,
    kernel_modules: str = "open",
    persistence_mode: bool = True,
    url: str | None = None,
    key: str | None = None,
    observed: GpuHostState | None = None,
    rollout: str = "",
    declared: str = "",
):
    """
    Install the NVIDIA driver at one exact version, pinned, with nouveau blacklisted.

    + version: the exact driver version, such as ``550.127.05``
    + kernel_modules: ``open`` (Turing and newer) or ``proprietary``
    + persistence_mode: keep nvidia-persistenced enabled and running
    + url: the CUDA repository (default: NVIDIA's for this host's OS)
    + key: its signing key, a local file or an https URL (default: NVIDIA's)
    + observed: the host's :class:`~tfenv.facts.gpu.GpuHostState`, if already read
    + rollout: the driver rollout that put ``version`` there (see :func:`driver_in_rollout`);
      with ``declared``, the version the data declares: reported as a rollout, not drift

    It does not reboot: see :func:`reboot_reasons` and the gpu_base deploy.

    **Example:**

    .. code:: python

        nvidia_driver(name="NVIDIA driver 550.127.05", version="550.127.05")
    """
    if kernel_modules not in ("open", "proprietary"):
        raise OperationError(f"kernel_modules {kernel_modules!r}: expected open or proprietary")
    state = observed or gpu_host(host)
    if rollout:
        record("driver", "version", declared, version, action="rollout",
               command=f"tfenv rollout status {rollout}")  # fmt: skip
    try:
        name = distro(state)
    except OperationError as exc:
        yield fail_host(str(exc))
        return
    if state.secure_boot and state.module_version != version:
        yield fail_host(
            "Secure Boot is enabled: the DKMS-built NVIDIA modules are unsigned and would not "
            "load, leaving the host without a driver. Nothing was changed. Enroll a MOK key "
            "for DKMS (mokutil --import) or turn Secure Boot off, then run the deploy again"
        )
        return
    url = url or f"{CUDA_REPOS}/{name}/x86_64/"
    key = key or f"{CUDA_REPOS}/{name}/x86_64/{CUDA_KEY_ID}.pub"
    yield from signed_repository._inner(
        list_file=f"/etc/apt/sources.list.d/cuda-{name}-x86_64.list",
        url=url,
        key=key,
        keyring=keyring_for(key, "cuda-archive-keyring"),
        replaces=(f"{CUDA_REPOS}/{name}",),
        observed=state,
    )
    changed = False
    if not state.nouveau_blacklisted:
        record("driver", "nouveau", "blacklisted", "not blacklisted")
        yield from write_file(NOUVEAU_FILE, NOUVEAU)
        yield "if command -v update-initramfs >/dev/null; then update-initramfs -u; fi"
        changed = True
    if state.apt_config.get(UNATTENDED_FILE) != UNATTENDED:
        record("driver", "unattended-upgrades", "driver blacklisted", "not blacklisted")
        yield from write_file(UNATTENDED_FILE, UNATTENDED)
        changed = True
    headers = f"linux-headers-{state.kernel}"
    if state.kernel and not state.installed(headers):
        record("driver", f"{headers}.version", "installed", "absent")
        # DKMS builds the module for the running kernel: without its headers, no module.
        yield "apt-get update -q"
        yield StringCommand(APT_INSTALL, QuoteString(headers))
        changed = True
    packages = driver_packages(state, version, kernel_modules)
    yield from pinned_packages._inner(
        packages=packages,
        preferences_file="/etc/apt/preferences.d/tfenv-nvidia-driver",
        observed=state,
        area="driver",
    )
    persistence_off = state.driver_state == "ok" and any(not g.persistence for g in state.gpus)
    if persistence_mode and persistence_off:
        record("driver", "persistence mode", "on", "off")
        yield "systemctl enable --now nvidia-persistenced"
        changed = True
    if not changed and all(state.installed(p) == v for p, v in packages.items()):
        host.noop(f"NVIDIA driver {version} ({kernel_modules} modules) installed and pinned")


@operation(is_idempotent=True)
def driver_ready(
    version: str,
    gpu_count: int | None = None,
    reboot: str = "if-needed",
    kernel_modules: str | None = None,
    current: Callable[[], GpuHostState] | None = None,
):
    """
    Fail the host unless ``nvidia-smi`` answers with driver ``version`` (and ``gpu_count`` GPUs).

    + version: the declared driver version
    + gpu_count: the declared number of GPUs, if any
    + reboot: the data's reboot policy, for the message (``never`` or ``if-needed``)
    + kernel_modules: the declared flavour (open or proprietary), checked when given
    + current: gives the host's state at execution time (default: read the fact)

    Checked when the deploy runs (after installs and reboots), never while planning.

    **Example:**

    .. code:: python

        driver_ready(name="Check the NVIDIA driver answers", version="550.127.05", gpu_count=8)
    """
    if not host.state.is_executing:
        host.noop("checked when the deploy runs")
        return
    state = current() if current else gpu_host(host)
    reasons = reboot_reasons(state, version, kernel_modules)
    if reasons:
        hint = (
            "reboot is 'never' in the data: reboot it in a maintenance window and run the "
            "deploy again; GPU containers stay off it until then"
            if reboot == "never"
            else "it was rebooted and still is not right: check the driver install (dkms status)"
        )
        yield fail_host(f"pending reboot: {'; '.join(reasons)}. {hint}")
    elif state.driver_state != "ok" or state.driver_version != version:
        yield fail_host(
            f"nvidia-smi does not answer with driver {version} "
            f"({state.smi_error or state.driver_state}); check the driver install"
        )
    elif gpu_count is not None and len(state.gpus) != gpu_count:
        yield fail_host(f"{len(state.gpus)} GPU(s) visible, gpu_count declares {gpu_count}")
    else:
        host.noop(f"driver {version} answers on {len(state.gpus)} GPU(s)")
