"""Lab test deploy: the GPU base with the declared driver version and reboot
policy taken from $TFENV_TEST_DRIVER_VERSION and $TFENV_TEST_REBOOT."""

import os

from pyinfra import host

from tfenv.deploys.gpu_base import gpu_base
from tfenv.deploys.spec import host_spec

spec = host_spec(host)
driver = spec.nvidia_driver.model_copy(
    update={
        "version": os.environ["TFENV_TEST_DRIVER_VERSION"],
        "reboot": os.environ["TFENV_TEST_REBOOT"],
    }
)
gpu_base(spec.model_copy(update={"nvidia_driver": driver}))
