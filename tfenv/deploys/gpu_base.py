"""GPU host base: Docker engine, pinned NVIDIA driver, container toolkit, reboot if due,
registry logins, and the proof: a container that sees the GPUs.

One GpuHost and one TfNode fact read per host feed every operation (two
round trips); the reboot decision and the checks read again at execution time.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import server

from tfenv.deploys.spec import registry_inputs
from tfenv.drift import record
from tfenv.facts.gpu import GpuHostState, gpu_host
from tfenv.facts.tf_node import TfNodeState, tf_node
from tfenv.model.spec import Driver, NodeSpec
from tfenv.operations.clock import clock_in_sync
from tfenv.operations.container_toolkit import container_toolkit
from tfenv.operations.docker_engine import docker_engine
from tfenv.operations.gpu_check import gpus_in_container
from tfenv.operations.image import pinned_image
from tfenv.operations.nvidia_driver import driver_ready, nvidia_driver, reboot_reasons
from tfenv.operations.registry_login import registry_logins

REBOOT_TIMEOUT = 900  # seconds: a GPU server with DKMS and 8 GPUs can take minutes


def _repository(spec: NodeSpec, name: str) -> dict[str, str]:
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
            **_repository(spec, "docker"),
        )
    driver = spec.nvidia_driver
    if driver:
        changers.append(
            nvidia_driver(
                name=f"NVIDIA driver {driver.version} ({driver.kernel_modules} modules)",
                version=driver.version,
                kernel_modules=driver.kernel_modules,
                persistence_mode=driver.persistence_mode,
                observed=observed,
                **_repository(spec, "cuda"),
            )
        )
    if spec.container_toolkit:
        changers.append(
            container_toolkit(
                name=f"NVIDIA container toolkit {spec.container_toolkit.version}",
                version=spec.container_toolkit.version,
                observed=observed,
                **_repository(spec, "nvidia_container_toolkit"),
            )
        )
    if driver:
        _reboot_and_check(spec, driver, CurrentState(observed, changers))
    node = node or tf_node(host)
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


def _reboot_and_check(spec: NodeSpec, driver: Driver, current: CurrentState) -> None:
    def reboot_due() -> bool:
        # Runs at execution time, after the package operations.
        reasons = reboot_reasons(current(), driver.version, driver.kernel_modules)
        if reasons:
            unattended = driver.reboot == "if-needed"
            record(
                "driver", "reboot", "no reboot pending", "; ".join(reasons),
                action="apply" if unattended else "person",
                command="" if unattended else (
                    "reboot it in a maintenance window (its reboot policy is never), "
                    "then run the tf_node deploy on it"
                ),
            )  # fmt: skip
        if reasons and driver.reboot == "if-needed":
            if host.state.is_executing:
                logger.info(f"{host.name}: rebooting: {'; '.join(reasons)}")
            return True
        return False

    current.changers.append(
        server.reboot(
            name="Reboot for the NVIDIA driver (only when due)",
            reboot_timeout=REBOOT_TIMEOUT,
            _if=reboot_due,
        )
    )
    driver_ready(
        name="Check the NVIDIA driver answers",
        version=driver.version,
        gpu_count=spec.gpu_count,
        reboot=driver.reboot,
        kernel_modules=driver.kernel_modules,
        current=current,
    )
