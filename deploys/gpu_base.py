"""The GPU host base alone: pyinfra INVENTORY deploys/gpu_base.py

Docker engine, pinned NVIDIA driver (rebooting when due and allowed),
NVIDIA container toolkit, as declared in group_data/. Stops with a clear
error before connecting when the declared data has problems.
"""

from pyinfra import host

from tfenv.deploys.gpu_base import gpu_base
from tfenv.deploys.spec import host_spec

gpu_base(host_spec(host))
