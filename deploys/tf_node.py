"""Take a host to a working TensorFlow node.

    pyinfra inventories/gpu.py deploys/tf_node.py

Thin on purpose: load this host's spec (validated; errors name host and
field), then hand it to the library's deploys.
"""

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from tfenv.deploys.spec import host_spec

spec = host_spec(host)

# The TF node steps (registry login, images, secrets, NFS, containers) are not
# built yet; refusing beats a run that claims success while doing half.
raise DeployError(
    f"{host.name}: declared data is valid, but tf_node's container steps are not "
    "implemented yet (issue 6). The GPU host base is: pyinfra INVENTORY "
    "deploys/gpu_base.py. Nothing was changed."
)
