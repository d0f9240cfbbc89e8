"""Run by tfenv reconcile --deep: the deep health probe of every declared container (a
real TF op, sshd, Jupyter with its token, the GPUs inside), one command per host, and
nothing else. pyinfra runs this file; nothing in it changes a host."""

from pyinfra import host

from tfenv.deploys.spec import host_spec
from tfenv.operations.container_health import HealthCheck, containers_health

spec = host_spec(host)
containers_health(
    name="Health of the containers",
    checks=[
        HealthCheck(name, container.gpus.visible(spec.gpu_count), container.jupyter is not None)
        for name, container in sorted(spec.containers.items())
    ],
    deep=True,
)
