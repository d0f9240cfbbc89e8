"""A driver change's reboot, never under a researcher's work and never fleet-wide at once.

Two operations the GPU base runs around the driver install:

- :func:`idle_for_driver` before it: when the change needs a reboot, every
  running container must be idle as its ``replace`` policy says (``when-idle``:
  else nothing is installed and the host fails with the reason, the upgrade
  pending; ``wait``: wait for it on the host; ``now``: go on, the notice comes
  right before the reboot). Nothing is half-applied on a busy host.
- :func:`driver_reboot` at its place: decided at run time, the same busy guard
  again right before ``reboot`` (a user may have logged in since), then pyinfra's
  own reboot and reconnect. The deploy runs it in batches of
  ``reboot_max_parallel`` hosts (pyinfra's ``_parallel``).
"""

from __future__ import annotations

from collections.abc import Callable

from pyinfra import host, logger, state
from pyinfra.api import StringCommand, operation
from pyinfra.operations import server

from tfenv.containers.busy import in_use
from tfenv.drift import record
from tfenv.facts.tf_node import TfNodeState
from tfenv.model.spec import ReplacePolicy
from tfenv.operations.failure import fail_host
from tfenv.operations.tf_container import OVERRIDE, busy_guard

REBOOT_TIMEOUT = 900  # seconds: a GPU server with DKMS and 8 GPUs can take minutes
# Seconds before the first reconnect try. pyinfra then tries every second and
# takes the host as rebooted only once its uptime is below what it was + this.
REBOOT_DELAY = 3
DEFAULT_MAX_PARALLEL = 1


def reboot_batch() -> int:
    """How many hosts of this run reboot at once: the smallest ``reboot_max_parallel``
    any host of the inventory declares (pyinfra's ``_parallel`` is one value per
    operation for all hosts), 1 when none does."""
    values = []
    for each in state.inventory:
        driver = each.data.get("nvidia_driver")
        if isinstance(driver, dict):
            value = driver.get("reboot_max_parallel", DEFAULT_MAX_PARALLEL)
            if isinstance(value, int) and value >= 1:
                values.append(value)
    return min(values, default=DEFAULT_MAX_PARALLEL)


Guarded = list[tuple[str, ReplacePolicy]]  # each declared container, with its policy


def _policy(replace: ReplacePolicy, force_busy: bool) -> str:
    return "now" if force_busy else replace.policy


def _guards(containers: Guarded, force_busy: bool, undo: str) -> list[StringCommand]:
    # Without the GPU signal: after the install, library and module differ until the
    # reboot, so nvidia-smi cannot list processes (and no new one can start on that
    # driver); the GPU processes were checked before the install (idle_for_driver).
    return [
        busy_guard(name, replace, _policy(replace, force_busy), "rebooted", undo, gpu=False)
        for name, replace in containers
    ]


@operation()
def idle_for_driver(
    version: str,
    why: list[str],
    containers: Guarded,
    observed: TfNodeState,
    force_busy: bool = False,
):
    """
    Before a driver change that needs a reboot: the host's containers are idle, as
    each one's ``replace`` policy says, or nothing is installed.

    + version: the driver version about to be installed
    + why: why the change needs a reboot (for the report)
    + containers: (name, replace policy) of every declared container
    + observed: the host's TfNode state (whether each container is in use)
    + force_busy: reboot even under containers in use (their users get a notice)

    **Example:**

    .. code:: python

        idle_for_driver(name="Containers idle for the driver's reboot", version="550.144.03",
                        why=["driver packages move"], containers=[("dev", replace)],
                        observed=node)
    """
    busy = {}
    for name, replace in containers:
        current = observed.containers.get(name)
        reasons = in_use(current, replace.idle_minutes) if current else []
        if reasons:
            busy[name] = (reasons, _policy(replace, force_busy))
    held = {n: r for n, (r, policy) in busy.items() if policy == "when-idle"}
    if held:
        listed = "; ".join(f"{n} ({', '.join(r)})" for n, r in sorted(held.items()))
        record("driver", "reboot", f"driver {version} installed, host rebooted",
               f"pending: in use: {listed}", action="person",
               command=f"once idle: run the deploy again; or now: {OVERRIDE} (users get a "
               "notice); or tfenv rollout start --driver, which waits for it")  # fmt: skip
        yield fail_host(
            f"driver {version}: nothing changed and the host NOT rebooted: container(s) in use "
            f"(replace: when-idle): {listed}. The driver change is pending "
            f"({'; '.join(why)}). Run the deploy again once they are idle, or now with "
            f"{OVERRIDE} (users get a notice on their terminals)."
        )
        return
    guards = [
        busy_guard(name, replace, "wait", "rebooted", "; nothing was installed")
        for name, replace in containers
        if name in busy and busy[name][1] == "wait"
    ]
    if not guards:
        host.noop("no container in use")
        return
    for name in sorted(busy):
        logger.info(f"{host.name}: {name} is in use: waiting for it before the driver change")
    yield from guards


@operation()
def driver_reboot(
    due: Callable[[], list[str]],
    containers: Guarded,
    reboot_never: bool = False,
    force_busy: bool = False,
    reboot_timeout: int = REBOOT_TIMEOUT,
):
    """
    Reboot for the NVIDIA driver when it is due, unless a container came into use.

    + due: gives, when the deploy runs, why a reboot is due ([]: none)
    + containers: (name, replace policy) of every declared container
    + reboot_never: the data's ``reboot: never``: record the reboot for a person instead
    + force_busy: reboot even under containers in use (their users get a notice)
    + reboot_timeout: seconds to wait for the host to come back

    **Example:**

    .. code:: python

        driver_reboot(name="Reboot for the NVIDIA driver", due=lambda: reasons,
                      containers=[("dev", replace)], _parallel=1)
    """
    if not host.state.is_executing:
        host.noop("decided when the deploy runs")
        return
    reasons = due()
    if not reasons:
        host.noop("no reboot due")
        return
    record(
        "driver", "reboot", "no reboot pending", "; ".join(reasons),
        action="person" if reboot_never else "apply",
        command=("reboot it in a maintenance window (its reboot policy is never), then run "
                 "the tf_node deploy on it") if reboot_never else "",
    )  # fmt: skip
    if reboot_never:
        host.noop("reboot due, but the data says reboot: never")
        return
    logger.info(f"{host.name}: rebooting: {'; '.join(reasons)}")
    yield from _guards(containers, force_busy, "; the reboot is pending")
    yield from server.reboot._inner(delay=REBOOT_DELAY, reboot_timeout=reboot_timeout)
