"""The local lab fleet, as written by `tfenv lab up` (see README).

Hosts, ports and keys come from the lab's state file (.lab/state.json, or
$TFENV_LAB_DIR/state.json): strict host key checking against the lab's own
known_hosts, a non-root deploy user with sudo.

    tfenv lab up --hosts 3
    pyinfra inventories/lab.py deploys/tf_node.py
"""

import json
import os
from pathlib import Path

_state_file = Path(os.environ.get("TFENV_LAB_DIR", ".lab")) / "state.json"
if not _state_file.exists():
    raise SystemExit(f"{_state_file} not found: the lab is not up. Run: tfenv lab up")
_state = json.loads(_state_file.read_text())

lab = [
    (
        _host["name"],
        {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": _host["port"],
            "ssh_user": _state["user"],
            "ssh_key": _state["key"],
            "ssh_known_hosts_file": _state["known_hosts"],
            "ssh_strict_host_key_checking": "yes",
            "_sudo": True,
            "lab_docker_name": _host["container"],
        },
    )
    for _host in _state["hosts"]
]
