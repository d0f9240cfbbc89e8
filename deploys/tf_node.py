"""Take a host to a working TensorFlow node.

    pyinfra inventories/gpu.py deploys/tf_node.py

Thin on purpose: load this host's spec (validated before any host is
touched; errors name host and field), then hand it to the library's deploy:
GPU host base, registry logins, NFS mounts, secret files, pinned images,
containers, and a health check per container.
"""

from pyinfra import host

from tfenv.deploys.spec import host_spec
from tfenv.deploys.tf_node import tf_node_deploy

tf_node_deploy(host_spec(host))
