"""Lab test deploy: tf_node with changes to the declared data, from the JSON in
$TFENV_TEST_CHANGES: {"containers.dev": {field: value}, "secrets": {...}}.
The changed spec goes through the same model as group_data (validation included)."""

import json
import os
from pathlib import Path

from pyinfra import host

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
tf_node_deploy(load(host.name, data, Path.cwd()))
