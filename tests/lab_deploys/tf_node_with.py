"""Lab test deploy: tf_node with changes to the declared data, from the JSON in
$TFENV_TEST_CHANGES: {"containers.dev": {field: value}, "secrets": {...}}.
The changed spec goes through the same model as group_data (validation included).

$TFENV_TEST_FAULT, when set, is a shell command run (as root) on each host
right before tf_node's first operation runs, after every fact was read: a
fault that strikes mid-run (say, dockerd going down)."""

import json
import os
from pathlib import Path

from pyinfra import host
from pyinfra.operations import server

from tfenv.deploys.tf_node import tf_node_deploy
from tfenv.model.load import load

changes = json.loads(os.environ.get("TFENV_TEST_CHANGES", "{}"))
data = host.data.dict()
for section, update in changes.items():
    if section.startswith("containers."):
        name = section.split(".", 1)[1]
        data["containers"] = {**data["containers"], name: {**data["containers"][name], **update}}
    else:
        data[section] = {**data.get(section, {}), **update}
fault = os.environ.get("TFENV_TEST_FAULT")
if fault:
    server.shell(name="LAB FAULT (test): " + fault, commands=[fault], _sudo=True)
tf_node_deploy(load(host.name, data, Path.cwd()))
