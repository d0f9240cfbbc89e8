"""Lab test deploy: the declared NVIDIA container toolkit repository, via tfenv's operation."""

from pyinfra import host

from tfenv.deploys.spec import host_spec
from tfenv.operations.apt_repository import signed_repository

repository = host_spec(host).apt_repositories.nvidia_container_toolkit
signed_repository(
    name="NVIDIA container toolkit repository",
    list_file="/etc/apt/sources.list.d/nvidia-container-toolkit.list",
    url=repository.url,
    key=repository.key,
    keyring="/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg",
    replaces=["nvidia.github.io/nvidia-docker", "nvidia.github.io/libnvidia-container"],
)
