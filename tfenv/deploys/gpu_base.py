"""GPU host base: Docker engine, pinned NVIDIA driver, container toolkit, reboot if due,
registry logins, and the proof: a container that sees the GPUs.

One GpuHost and one TfNode fact read per host feed every operation (two
round trips); the reboot decision and the checks read again at execution time.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from tfenv.deploys.spec import registry_inputs
from tfenv.facts.gpu import GpuHostState, gpu_host
from tfenv.facts.tf_node import TfNodeState, tf_node
from tfenv.model.spec import Driver, NodeSpec
from tfenv.operations.clock import clock_in_sync
from tfenv.operations.container_toolkit import container_toolkit
from tfenv.operations.docker_engine import docker_engine
from tfenv.operations.driver_reboot import Guarded, driver_reboot, idle_for_driver, reboot_batch
from tfenv.operations.gpu_check import gpus_in_container
from tfenv.operations.image import pinned_image
from tfenv.operations.nvidia_driver import (
    driver_in_rollout,
    driver_ready,
    nvidia_driver,
    reboot_after_install,
    reboot_reasons,
)
from tfenv.operations.registry_login import registry_logins
from tfenv.operations.tf_container import is_forced


def repository_args(spec: NodeSpec, name: str) -> dict[str, str]:
    repository = getattr(spec.apt_repositories, name)
    return {"url": repository.url, "key": repository.key} if repository else {}


@deploy("GPU host base")
def gpu_base(
    spec: NodeSpec, node: TfNodeState | None = None, observed: GpuHostState | None = None
) -> None:
    observed = observed or gpu_host(host)
    # First: a host whose clock is off stops here, before any change.
    clock_in_sync(name="Clock in sync with this machine", observed=observed)
    changers = []  # operations after which the host must be read again
    if spec.docker_engine:
        engine = spec.docker_engine
        docker_engine(
            name=f"Docker engine {engine.version} ({engine.source})",
            version=engine.version,
            source=engine.source,
            observed=observed,
            **repository_args(spec, "docker"),
        )
    driver = spec.nvidia_driver
    version = driver.version if driver else ""
    node = node or tf_node(host)
    force_busy = is_forced(host.data.get("force_busy", False))
    guarded = running_containers(spec, node)
    if driver:
        version, rollout = driver_in_rollout(observed, driver.version, driver.kernel_modules)
        due = reboot_after_install(observed, version, driver.kernel_modules)
        if due and driver.reboot == "if-needed":
            idle_for_driver(
                name="Containers idle for the driver's reboot",
                version=version,
                why=due,
                containers=guarded,
                observed=node,
                force_busy=force_busy,
            )
        changers.append(
            nvidia_driver(
                name=f"NVIDIA driver {version} ({driver.kernel_modules} modules)",
                version=version,
                kernel_modules=driver.kernel_modules,
                persistence_mode=driver.persistence_mode,
                observed=observed,
                rollout=rollout,
                declared=driver.version,
                **repository_args(spec, "cuda"),
            )
        )
    if spec.container_toolkit:
        changers.append(
            container_toolkit(
                name=f"NVIDIA container toolkit {spec.container_toolkit.version}",
                version=spec.container_toolkit.version,
                observed=observed,
                **repository_args(spec, "nvidia_container_toolkit"),
            )
        )
    if driver:
        _reboot_and_check(spec, driver, version, CurrentState(observed, changers), guarded,
                          force_busy)  # fmt: skip
    logins, cas = registry_inputs(spec)
    if logins or cas or node.sealed:
        registry_logins(
            name="Registry logins (credentials never leave root-only files)",
            logins=logins,
            ca_certificates=cas,
            observed=node,
        )
    if spec.gpu_check_image and spec.image_lock:
        check_image = spec.image_lock.images[spec.gpu_check_image].pinned
        pinned_image(
            name=f"Pull {spec.gpu_check_image} by digest", image=check_image, observed=node
        )
        gpus_in_container(
            name="Check a container sees the GPUs", image=check_image, gpu_count=spec.gpu_count
        )


def running_containers(spec: NodeSpec, node: TfNodeState) -> Guarded:
    """The declared containers a reboot would end, with their replace policies: those
    running now (the deploy starts the others after the reboot)."""
    return [
        (name, c.replace)
        for name, c in sorted(spec.containers.items())
        if name in node.containers and node.containers[name].running
    ]


class CurrentState:
    """The host's GpuHostState while the deploy executes: the planning read, unless an
    operation since changed the host (then one fresh read). Saves two round trips per
    host on a run that changes nothing."""

    def __init__(self, planned: GpuHostState, changers: list) -> None:
        self.planned, self.changers = planned, changers
        self._seen: set[int] = set()  # changes already reflected in ``planned``

    def __call__(self) -> GpuHostState:
        # Only operations that already ran (the reboot's own _if runs before it does).
        changed = {
            id(op) for op in self.changers if op.is_complete() and op.did_change()
        } - self._seen
        if changed:
            self.planned = gpu_host(host)
            self._seen |= changed
        return self.planned


def _reboot_and_check(
    spec: NodeSpec,
    driver: Driver,
    version: str,
    current: CurrentState,
    guarded: list,
    force_busy: bool,
) -> None:
    def due() -> list[str]:
        # Runs at execution time, after the package operations.
        return reboot_reasons(current(), version, driver.kernel_modules)

    current.changers.append(
        driver_reboot(
            name="Reboot for the NVIDIA driver (only when due)",
            due=due,
            containers=guarded,
            reboot_never=driver.reboot == "never",
            force_busy=force_busy,
            _parallel=reboot_batch(),
        )
    )
    driver_ready(
        name="Check the NVIDIA driver answers",
        version=version,
        gpu_count=spec.gpu_count,
        reboot=driver.reboot,
        kernel_modules=driver.kernel_modules,
        current=current,
    )
