"""The local lab fleet, as written by `tfenv lab up` (see README).

Hosts, ports and keys come from the lab's state file (.lab/state.json, or
$TFENV_LAB_DIR/state.json): strict host key checking against the lab's own
known_hosts, a non-root deploy user with sudo. The lab's declared state
(registry, image lock, containers) is in group_data/lab.py.

    tfenv lab up --hosts 3
    pyinfra inventories/lab.py deploys/tf_node.py
"""

from tfenv.lab.fleet import current_state
from tfenv.lab.run import LabError

try:
    _state = current_state()
except LabError as _error:  # no lab: say so in one line (pyinfra would show a traceback)
    raise SystemExit(f"inventories/lab.py: {_error}") from None

lab = [
    (_host.name, {**_state.ssh_data(_host.name), "lab_docker_name": _host.container})
    for _host in _state.hosts
]

# The lab's first host takes new images first (tfenv rollout start).
canary = [_state.hosts[0].name] if _state.hosts else []
