"""Lab test deploy: the GPU base with the declared driver moved to 550.144.03."""

from pyinfra import host

from tfenv.deploys.gpu_base import gpu_base
from tfenv.deploys.spec import host_spec

spec = host_spec(host)
upgraded = spec.nvidia_driver.model_copy(update={"version": "550.144.03"})
gpu_base(spec.model_copy(update={"nvidia_driver": upgraded}))
