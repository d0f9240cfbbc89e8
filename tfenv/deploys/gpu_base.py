"""GPU host base: Docker engine, pinned NVIDIA driver, container toolkit, reboot if due.

One GpuHost fact read per host feeds every operation (one round trip); the
reboot decision reads it again after the changes, at execution time.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import server

from tfenv.facts.gpu import gpu_host
from tfenv.model.spec import NodeSpec
from tfenv.operations.container_toolkit import container_toolkit
from tfenv.operations.docker_engine import docker_engine
from tfenv.operations.nvidia_driver import driver_ready, nvidia_driver, reboot_reasons

REBOOT_TIMEOUT = 900  # seconds: a GPU server with DKMS and 8 GPUs can take minutes


def _repository(spec: NodeSpec, name: str) -> dict[str, str]:
    repository = getattr(spec.apt_repositories, name)
    return {"url": repository.url, "key": repository.key} if repository else {}


@deploy("GPU host base")
def gpu_base(spec: NodeSpec) -> None:
    observed = gpu_host(host)
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
        nvidia_driver(
            name=f"NVIDIA driver {driver.version} ({driver.kernel_modules} modules)",
            version=driver.version,
            kernel_modules=driver.kernel_modules,
            persistence_mode=driver.persistence_mode,
            observed=observed,
            **_repository(spec, "cuda"),
        )
    if spec.container_toolkit:
        container_toolkit(
            name=f"NVIDIA container toolkit {spec.container_toolkit.version}",
            version=spec.container_toolkit.version,
            observed=observed,
            **_repository(spec, "nvidia_container_toolkit"),
        )
    if not driver:
        return

    def reboot_due() -> bool:
        # Read again now that packages changed: this runs at execution time.
        reasons = reboot_reasons(gpu_host(host), driver.version, driver.kernel_modules)
        if reasons and driver.reboot == "if-needed":
            logger.info(f"{host.name}: rebooting: {'; '.join(reasons)}")
            return True
        return False

    server.reboot(
        name="Reboot for the NVIDIA driver (only when due)",
        reboot_timeout=REBOOT_TIMEOUT,
        _if=reboot_due,
    )
    driver_ready(
        name="Check the NVIDIA driver answers",
        version=driver.version,
        gpu_count=spec.gpu_count,
        reboot=driver.reboot,
        kernel_modules=driver.kernel_modules,
    )
