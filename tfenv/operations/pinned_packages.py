"""Packages at exact versions that nothing upgrades behind our back.

Three guards, because each alone has failed users: ``apt-mark hold`` (stops
``apt-get upgrade``), an apt preferences pin at the exact version with
priority 1001 (stops a dependency or a transitional package from pulling
another version, and allows going back), and, for the driver, a blacklist
for unattended-upgrades (see :mod:`tfenv.operations.nvidia_driver`).
"""

from __future__ import annotations

import fnmatch

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from tfenv.drift import record
from tfenv.facts.gpu import PACKAGE_PATTERNS, GpuHostState, gpu_host
from tfenv.operations.config_file import write_file

APT_INSTALL = (
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "
    "--allow-change-held-packages -o Dpkg::Options::=--force-confdef "
    "-o Dpkg::Options::=--force-confold"
)


def matches(installed: str | None, wanted: str) -> bool:
    """An installed version satisfies an exact version or an apt version glob (``20.10.24*``)."""
    if installed is None:
        return False
    return installed == wanted or ("*" in wanted and fnmatch.fnmatchcase(installed, wanted))


def preferences(packages: dict[str, str]) -> str:
    """An apt preferences file pinning each package to its exact version."""
    blocks = [
        f"Package: {name}\nPin: version {version}\nPin-Priority: 1001\n"
        for name, version in sorted(packages.items())
    ]
    return "# Managed by tfenv: exact versions, never upgraded behind its back.\n\n" + "\n".join(
        blocks
    )


@operation()
def pinned_packages(
    packages: dict[str, str],
    preferences_file: str,
    hold: bool = True,
    observed: GpuHostState | None = None,
    area: str = "other",
):
    """
    Install packages at exact versions, pin them there and hold them.

    + packages: package name -> exact apt version (``550.127.05-1``, ``1.17.3-1``), or a
      glob where the distribution adds a suffix (``20.10.24*``); apt pins take both
    + preferences_file: the apt pin file, /etc/apt/preferences.d/tfenv-NAME
    + hold: also ``apt-mark hold`` them
    + observed: the host's :class:`~tfenv.facts.gpu.GpuHostState`, if already read
    + area: the report area its drift belongs to (``driver``, ``docker``, ``toolkit``)

    **Example:**

    .. code:: python

        pinned_packages(
            name="NVIDIA container toolkit 1.17.3",
            packages={"nvidia-container-toolkit": "1.17.3-1", "libnvidia-container1": "1.17.3-1"},
            preferences_file="/etc/apt/preferences.d/tfenv-nvidia-container-toolkit",
        )
    """
    if not packages:
        raise OperationError("packages: expected at least one package")
    if not preferences_file.startswith("/etc/apt/preferences.d/tfenv-"):
        raise OperationError(
            f"preferences_file {preferences_file!r}: expected /etc/apt/preferences.d/tfenv-NAME"
        )
    for name in packages:
        # The GpuHost fact reads these package names only: others would never look installed.
        if not any(fnmatch.fnmatch(name, pattern) for pattern in PACKAGE_PATTERNS):
            raise OperationError(
                f"package {name!r}: tfenv observes only {', '.join(PACKAGE_PATTERNS)}"
            )

    state = observed or gpu_host(host)
    wanted_pins = preferences(packages)
    changed = False
    if state.apt_config.get(preferences_file) != wanted_pins:
        pins = "absent" if preferences_file not in state.apt_config else "other pins"
        record(area, f"pin {preferences_file}", "exact versions", pins)
        # The pin goes first: it also decides what the install below may pick.
        yield from write_file(preferences_file, wanted_pins)
        changed = True

    differ = sorted(
        name for name, version in packages.items() if not matches(state.installed(name), version)
    )
    for name in differ:
        record(area, f"{name}.version", packages[name], state.installed(name) or "absent")
    if differ:
        specs = [QuoteString(f"{name}={packages[name]}") for name in differ]
        # Fresh hosts (and cloud images) often have no package lists, old hosts stale
        # ones: either way the exact version would not be found.
        yield "apt-get update -q"
        yield StringCommand(APT_INSTALL, *specs)
        changed = True

    unheld = sorted(set(packages) - set(state.holds)) if hold else []
    for name in unheld:
        record(area, f"{name}.hold", "held", "not held")
    if hold and (unheld or differ):
        yield StringCommand("apt-mark", "hold", *[QuoteString(n) for n in sorted(packages)])
        changed = True

    if not changed:
        described = ", ".join(f"{name}={version}" for name, version in sorted(packages.items()))
        host.noop(f"{described} installed, pinned{' and held' if hold else ''}")
