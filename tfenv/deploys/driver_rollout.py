"""One step of a driver rollout on the hosts of one pyinfra run (``tfenv rollout
start --driver``; see :mod:`tfenv.deploys.rollout` for how steps arrive). Phases:

- ``driver-observe`` (``--dry``): the driver as installed and loaded, the
  host's record of a driver rollout, and each declared container: running, in use;
- ``driver-move`` (``-y``): the busy guard of every declared container (its
  ``replace`` policy), then those running stopped cleanly, the host's record
  written, the pinned driver installed (up or down), a reboot when the loaded
  module differs, and the containers started again. Idempotent: a host whose
  module already is the target is not rebooted again (``resume`` after a kill);
- ``driver-check`` (``--dry``): nvidia-smi as the gates read it, and each
  container's health (the in-container probe: sshd, Jupyter, GPUs, a TF op);
- ``driver-forget`` (``-y``): the host's record of the rollout removed, once it
  completed (the group data declares the new version then).
"""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from tfenv import layout
from tfenv.deploys.gpu_base import CurrentState, repository_args, running_containers
from tfenv.drift import write_line
from tfenv.facts.canary import CanaryCheck
from tfenv.facts.gpu import gpu_host
from tfenv.facts.tf_node import tf_node
from tfenv.model.spec import NodeSpec, ReplacePolicy
from tfenv.operations.driver_reboot import driver_reboot, idle_for_driver
from tfenv.operations.nvidia_driver import (
    nvidia_driver,
    reboot_after_install,
    reboot_reasons,
)
from tfenv.operations.tf_container import busy_guard, is_forced


def _driver_line(state) -> dict:
    return {
        "driver_state": state.driver_state,
        "driver_version": state.driver_version,
        "module_version": state.module_version,
        "smi_error": state.smi_error,
        "gpus": len(state.gpus),
        # Debian names the package nvidia-driver; Ubuntu nvidia-driver-<branch>.
        "installed": state.installed("nvidia-driver")
        or next((state.installed(p) for p in sorted(state.packages)
                 if p.startswith("nvidia-driver-") and state.installed(p)), None),
        "record": state.driver_rollout,
    }  # fmt: skip


@operation()
def driver_record(record: dict, present: bool = True):
    """
    Write (or remove) this host's record of the driver rollout that moves it.

    + record: the rollout's id, and the versions from and to
    + present: write it, or remove it (only if it is this rollout's)

    **Example:**

    .. code:: python

        driver_record(name="Driver rollout record", record={"id": "r-...", "from": "550.127.05",
                      "to": "550.144.03"})
    """
    path = QuoteString(layout.DRIVER_ROLLOUT_FILE)
    if present:
        text = QuoteString(json.dumps(record, sort_keys=True))
        yield StringCommand("install", "-d", "-m", "0755", QuoteString(layout.ROLLOUT_LOCK_DIR),
                            "&&", "printf", "'%s\\n'", text, ">", path)  # fmt: skip
    else:
        mine = QuoteString(f'"id": "{record["id"]}"')
        yield StringCommand("!", "grep", "-qF", mine, path, "2>/dev/null", "||", "rm", "-f", path)


@operation()
def containers_stopped(names: list[str]):
    """
    Stop ``names`` cleanly (30 s for their processes to exit) before the reboot.

    + names: containers tfenv declared here that were running

    **Example:**

    .. code:: python

        containers_stopped(name="Stop containers", names=["dev"])
    """
    for name in names:
        yield StringCommand("docker", "stop", "-t", "30", QuoteString(name), ">/dev/null",
                            "2>&1", "||", "true")  # fmt: skip


@operation()
def containers_started(names: list[str]):
    """
    Start ``names`` again after the reboot (one that cannot start, on a driver that does
    not load, is left to the gates to report).

    + names: the containers that ran before the move

    **Example:**

    .. code:: python

        containers_started(name="Start containers", names=["dev"])
    """
    for name in names:
        yield StringCommand("docker", "start", QuoteString(name), ">/dev/null", "2>&1", "||",
                            "echo", QuoteString(f"tfenv: {name} did not start"), ">&2")  # fmt: skip


def driver_step(spec: NodeSpec, phase: str, mine: dict) -> None:
    driver = spec.nvidia_driver
    if driver is None:
        write_line({"host": host.name, "error": "no nvidia_driver is declared here"})
        return
    if phase == "driver-observe":
        node = tf_node(host)
        state = gpu_host(host)
        write_line({
            "host": host.name,
            "driver": _driver_line(state),
            "declared": driver.version,
            "running": sorted(n for n in spec.containers
                              if n in node.containers and node.containers[n].running),
        })  # fmt: skip
        return
    if phase == "driver-check":
        state = gpu_host(host)
        checks = {}
        for name, container in sorted(spec.containers.items()):
            checks[name] = {
                "check": host.get_fact(
                    CanaryCheck, container=name, health=True, metrics=False,
                    checkpoints=container.checkpoints.path if container.checkpoints else None,
                    model=None, timeout=container.canary.health_timeout,
                ),
                "gpus": container.gpus.visible(spec.gpu_count),
                "jupyter": container.jupyter is not None,
            }  # fmt: skip
        write_line({"host": host.name, "driver": _driver_line(state),
                    "gpu_count": spec.gpu_count, "containers": checks})  # fmt: skip
        return
    if phase == "driver-forget":  # the rollout completed: its record goes
        driver_record(name="Driver rollout record", record=mine["forget"], present=False)
        return
    # driver-move: to mine["version"]; mine["record"] is the host's record of it.
    version, running = mine["version"], list(mine.get("running", []))
    node = tf_node(host)
    observed = gpu_host(host)
    guarded = running_containers(spec, node)
    force_busy = is_forced(host.data.get("force_busy", False))
    due = reboot_after_install(observed, version, driver.kernel_modules)
    if due:
        idle_for_driver(name="Containers idle for the driver's reboot", version=version, why=due,
                        containers=guarded, observed=node, force_busy=force_busy)  # fmt: skip
        # Right before they stop, the same guard on the host (a user may have come).
        for name, replace in guarded:
            if name in running:
                busy_before_stop(
                    name=f"{name} idle before it stops",
                    container=name,
                    replace=replace,
                    policy="now" if force_busy else replace.policy,
                )
        containers_stopped(name="Stop the containers cleanly", names=running)
    if mine.get("record"):
        driver_record(name="Driver rollout record", record=mine["record"])
    changed = nvidia_driver(
        name=f"NVIDIA driver {version} ({driver.kernel_modules} modules)",
        version=version,
        kernel_modules=driver.kernel_modules,
        persistence_mode=driver.persistence_mode,
        observed=observed,
        **repository_args(spec, "cuda"),
    )
    current = CurrentState(observed, [changed])
    driver_reboot(
        name="Reboot for the NVIDIA driver (only when due)",
        due=lambda: reboot_reasons(current(), version, driver.kernel_modules),
        containers=[],  # stopped above, after their guard
    )
    containers_started(name="Start the containers again", names=running)
    if mine.get("forget"):
        driver_record(name="Driver rollout record", record=mine["forget"], present=False)


@operation()
def busy_before_stop(container: str, replace: ReplacePolicy, policy: str):
    """
    The busy guard of ``container`` on the host, right before it stops for the reboot.

    + container: a declared container that runs
    + replace: its replace policy (idle minutes, wait timeout)
    + policy: when-idle (stop the host's move), wait, or now (a notice first)

    **Example:**

    .. code:: python

        busy_before_stop(name="dev idle", container="dev", replace=replace, policy="when-idle")
    """
    yield busy_guard(container, replace, policy, "rebooted", "; nothing was changed")
