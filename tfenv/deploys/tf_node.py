"""The TF node: GPU host base, then NFS mounts, secrets, images and containers, then
a health check per container.

Two facts per host (GpuHost, TfNode) feed every operation; the health checks
read one more per container at execution time.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy

from tfenv.containers.desired import desired_container, mounted_secrets, secret_path
from tfenv.deploys.gpu_base import gpu_base
from tfenv.deploys.spec import secret_value
from tfenv.facts.gpu import gpu_host
from tfenv.facts.tf_node import tf_node
from tfenv.model.spec import Container, NodeSpec
from tfenv.operations.container_health import container_health, node_summary
from tfenv.operations.nfs_mount import nfs_mount
from tfenv.operations.sealed_file import seal_of
from tfenv.operations.tf_container import container_files, tf_container


def _gpus_inside(container: Container, gpu_count: int | None) -> int | None:
    if container.gpus is None:
        return None
    if container.gpus == "all":
        return gpu_count
    if isinstance(container.gpus, int):
        return container.gpus
    return len(container.gpu_indices)


@deploy("TF node")
def tf_node_deploy(spec: NodeSpec) -> None:
    node, observed_host = tf_node(host), gpu_host(host)
    gpu_base(spec, node=node, observed=observed_host)
    used = {c.checkpoints.nfs for c in spec.containers.values() if c.checkpoints}
    for mount_name, mount in sorted(spec.nfs_mounts.items()):
        if mount_name not in used:
            continue
        nfs_mount(
            name=f"NFS mount {mount_name} on {mount.mount_point}",
            mount_name=mount_name,
            server=mount.server,
            export=mount.export,
            mount_point=mount.mount_point,
            options=mount.options,
            observed=node,
            observed_host=observed_host,
        )
    for name, container in sorted(spec.containers.items()):
        assert spec.image_lock is not None  # the model requires a lock for containers
        pinned = spec.image_lock.images[container.image].pinned
        values = {secret: secret_value(spec, secret) for secret in mounted_secrets(container)}
        seals = {
            secret: seal_of(secret_path(name, secret), value) for secret, value in values.items()
        }
        desired = desired_container(name, container, pinned, spec.nfs_mounts, seals)
        container_files(
            name=f"Secret files and authorized keys of {name}",
            desired=desired,
            secrets=values,
            authorized_keys="".join(key.strip() + "\n" for key in container.authorized_keys),
            observed=node,
        )
        tf_container(name=f"Container {name} ({container.image})", desired=desired, observed=node)
        container_health(
            name=f"Health of {name}",
            container=name,
            gpus=_gpus_inside(container, spec.gpu_count),
            jupyter=container.jupyter is not None,
        )
    node_summary(
        name="Summary",
        lines=[
            f"driver {spec.nvidia_driver.version}" if spec.nvidia_driver else "no driver declared",
            f"{spec.gpu_count} GPU(s)" if spec.gpu_count is not None else "GPUs not counted",
            *(f"{name}: {c.image}" for name, c in sorted(spec.containers.items())),
        ],
    )
    undeclared = sorted(set(node.containers) - set(spec.containers))
    for name in undeclared:
        logger.warning(
            f"{host.name}: container {name} carries tfenv's label but is not declared; "
            f"tfenv leaves it alone (remove it with: docker rm -f {name})"
        )
