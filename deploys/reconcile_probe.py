"""Run by tfenv reconcile --deep: the health probe of each declared container (a real TF op,
sshd, Jupyter with its token, the GPUs inside) and nothing else. pyinfra runs this
file; nothing in it changes a host."""

from pyinfra import host

from tfenv.deploys.spec import host_spec
from tfenv.operations.container_health import container_health

spec = host_spec(host)
for name, container in sorted(spec.containers.items()):
    container_health(
        name=f"Health of {name}",
        container=name,
        gpus=container.gpus.visible(spec.gpu_count),
        jupyter=container.jupyter is not None,
    )
