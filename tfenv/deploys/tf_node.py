"""The TF node: GPU host base, then NFS mounts, secrets, images and containers, then
a health check per container.

Two facts per host (GpuHost, TfNode) feed every operation; the health checks
read one more per container at execution time.
"""

from __future__ import annotations

from collections.abc import Callable

import gevent
from pyinfra import host, logger, state
from pyinfra.api import deploy
from pyinfra.context import ctx_host, ctx_state

from tfenv import layout
from tfenv.containers.desired import DesiredContainer, desired_container, mounted_secrets
from tfenv.deploys.gpu_base import gpu_base
from tfenv.deploys.spec import pinned_image, secret_value
from tfenv.facts.gpu import GpuHostState, gpu_host
from tfenv.facts.tf_node import TfNodeState, tf_node
from tfenv.layout import PREVIOUS_SUFFIX, secret_path
from tfenv.model.spec import Container, NodeSpec
from tfenv.operations.container_health import HealthCheck, containers_health, node_summary
from tfenv.operations.nfs_mount import nfs_mount
from tfenv.operations.sealed_file import seal_of
from tfenv.operations.tf_container import (
    container_files,
    is_forced,
    pending_replacements,
    tf_container,
)
from tfenv.reconcile.collect import exec_allowed, host_done
from tfenv.reconcile.report import Item


def read_both(exec_probes: bool) -> tuple[TfNodeState, GpuHostState]:
    """The host's two wide facts at once, on two channels of its one SSH connection:
    the planning phase waits for the slower one only."""
    real_state, real_host = ctx_state.get(), ctx_host.get()

    def read(fact: Callable[..., object], **arguments: object) -> object:
        # A new greenlet starts without pyinfra's (greenlet-local) context.
        with ctx_state.use(real_state), ctx_host.use(real_host):
            return fact(real_host, **arguments)

    jobs = [gevent.spawn(read, tf_node, exec_probes=exec_probes), gevent.spawn(read, gpu_host)]
    gevent.joinall(jobs, raise_error=True)
    return jobs[0].value, jobs[1].value


def declared_container(
    spec: NodeSpec, name: str, container: Container, node: TfNodeState
) -> DesiredContainer:
    """``container`` resolved for ``docker run`` (the lock's image), with its secret
    files and authorized keys put in place first (an operation)."""
    values = {secret: secret_value(spec, secret) for secret in mounted_secrets(container)}
    seals = {secret: seal_of(secret_path(name, secret), value) for secret, value in values.items()}
    desired = desired_container(
        name, container, pinned_image(spec, container.image), spec.nfs_mounts, seals,
        spec.publish_address,
    )  # fmt: skip
    container_files(
        name=f"Secret files and authorized keys of {name}",
        desired=desired,
        secrets=values,
        authorized_keys="".join(key.strip() + "\n" for key in container.authorized_keys),
        observed=node,
    )
    return desired


@deploy("TF node")
def tf_node_deploy(spec: NodeSpec) -> None:
    node, observed_host = read_both(exec_allowed())
    gpu_base(spec, node=node, observed=observed_host)
    used = {c.checkpoints.nfs for c in spec.containers.values() if c.checkpoints}
    used |= {c.workspace.nfs for c in spec.containers.values() if c.workspace.nfs}
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
        desired = declared_container(spec, name, container, node)
        tf_container(
            name=f"Container {name} ({container.image})",
            desired=desired,
            observed=node,
            force_busy=is_forced(host.data.get("force_busy", False)),
        )
    pending_replacements(name="Pending replacements")
    containers_health(
        name="Health of the containers",
        checks=[
            HealthCheck(name, container.gpus.visible(spec.gpu_count), container.jupyter is not None)
            for name, container in sorted(spec.containers.items())
        ],
    )
    node_summary(
        name="Summary",
        lines=[
            f"driver {spec.nvidia_driver.version}" if spec.nvidia_driver else "no driver declared",
            f"{spec.gpu_count} GPU(s)" if spec.gpu_count is not None else "GPUs not counted",
            *(f"{name}: {c.image}" for name, c in sorted(spec.containers.items())),
        ],
    )
    undeclared = sorted(
        name
        for name in set(node.containers) - set(spec.containers)
        if name.removesuffix(PREVIOUS_SUFFIX) not in spec.containers  # tf_container's
        and not _hotfix_of(node.containers[name].labels, spec)
    )
    for name in sorted(set(node.containers) - set(spec.containers) - set(undeclared)):
        of = _hotfix_of(node.containers[name].labels, spec)
        if of:
            logger.info(f"{host.name}: {name} is a hotfix of {of} (tfenv hotfix finish "
                        f"{host.name} {of} removes it)")  # fmt: skip
    for name in undeclared:
        logger.warning(
            f"{host.name}: container {name} carries tfenv's label but is not declared; "
            f"tfenv leaves it alone (remove it with: docker rm -f {name})"
        )
    host_done(state, host, _observations(spec, node, undeclared))


def _hotfix_of(labels: dict[str, str], spec: NodeSpec) -> str | None:
    """The declared container a ``tfenv hotfix`` sibling belongs to, if it is one."""
    of = labels.get(layout.HOTFIX_OF_LABEL)
    return of if of in spec.containers else None


def _observations(spec: NodeSpec, node, undeclared: list[str]) -> list[Item]:
    """What no operation changes but a report shows: containers tfenv leaves alone, and
    declared ones Docker reports unhealthy (a person looks at those)."""
    items = [
        Item("undeclared", name, "absent (not declared)", node.containers[name].status,
             "person", f"docker rm -f {name}  (after saving what its user needs)")
        for name in undeclared
    ]  # fmt: skip
    for name in sorted(spec.containers):
        observed = node.containers.get(name)
        if observed is not None and observed.health == "unhealthy":
            items.append(Item("containers", f"{name}.health", "healthy", "unhealthy", "person",
                              f"docker logs --tail 50 {name}"))  # fmt: skip
    return items
