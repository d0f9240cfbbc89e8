"""Take a host to a working TensorFlow node.

    pyinfra inventories/gpu.py deploys/tf_node.py

Thin on purpose: load this host's spec (validated; errors name host and
field), then hand it to the library's deploys.
"""

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from tfenv.deploys.spec import host_spec

spec = host_spec(host)

# The provisioning steps (GPU base, images, secrets, NFS, containers) are not
# built yet; refusing beats a run that claims success while doing nothing.
raise DeployError(
    f"{host.name}: declared data is valid, but tf_node's provisioning steps are not "
    "implemented yet (GPU base: issue 5; TF node: issue 6). Nothing was changed."
)
