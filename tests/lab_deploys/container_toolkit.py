"""Lab test deploy: the declared NVIDIA container toolkit, via tfenv's operation."""

from pyinfra import host

from tfenv.deploys.spec import host_spec
from tfenv.operations.container_toolkit import container_toolkit

spec = host_spec(host)
container_toolkit(
    name=f"NVIDIA container toolkit {spec.container_toolkit.version}",
    version=spec.container_toolkit.version,
    url=spec.apt_repositories.nvidia_container_toolkit.url,
    key=spec.apt_repositories.nvidia_container_toolkit.key,
)
