"""The proof a GPU host works: a container sees its GPUs."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from tfenv.containers.docker_up import NO_DAEMON, docker_down_message
from tfenv.facts.gpu import GpuInContainer
from tfenv.operations.failure import fail_host
from tfenv.operations.run_state import deep_checks


@operation()
def gpus_in_container(image: str, gpu_count: int | None = None):
    """
    Fail the host unless ``docker run --rm --gpus all IMAGE nvidia-smi -L`` lists its GPUs.

    + image: a small image already on the host, pinned (``name@sha256:...``)
    + gpu_count: how many GPUs must be listed (at least one when not declared)

    Checked when the deploy runs (after the driver, toolkit and pull), never
    while planning, and only when something changed on the host in this run or
    ``--data health=deep`` asks (see :mod:`tfenv.operations.run_state`): in a
    run that changed nothing, the facts read the driver and GPUs and the
    containers' own probe lists the GPUs inside them. Changes nothing.

    **Example:**

    .. code:: python

        gpus_in_container(name="GPUs visible in a container", image=pinned, gpu_count=8)
    """
    if not host.state.is_executing:
        host.noop("checked when the deploy runs")
        return
    deep, why = deep_checks(host)
    if not deep:
        host.noop(f"not run: {why}")
        return
    result = host.get_fact(GpuInContainer, image=image)
    listed = [line for line in result["lines"] if line.startswith("GPU ")]
    expected = gpu_count if gpu_count is not None else max(len(listed), 1)
    if result["rc"] == 0 and len(listed) == expected:
        host.noop(f"{len(listed)} GPU(s) visible inside a container")
        return
    said = next(iter(result["lines"]), f"exit status {result['rc']}")
    if NO_DAEMON in said:  # dockerd went down and did not come back: not the toolkit
        yield fail_host(f"the GPU check in a container could not run: {docker_down_message()}")
        return
    yield fail_host(
        f"a container does not see the GPUs: `docker run --gpus all {image} nvidia-smi -L` "
        f"listed {len(listed)} of {expected} ({said[:300]}). Check the container toolkit "
        "(nvidia-ctk runtime configure, then restart Docker) and the driver"
    )
