"""The tf_node state declared with pyinfra's built-in operations only, for
benchmarks/fleet.py (its "generic pyinfra" case): what a pyinfra user without
tfenv would write. It declares what tfenv's deploy left on the hosts
(declared.json, read off lab-1 by benchmarks/comparison/readout.py; the path in
$TFENV_BENCH_DECLARED): the same pinned packages, files, units, image and
container, and the same light health checks.

pyinfra has no operation for dpkg holds (the apt pin files, among the files,
keep the versions) nor for a registry login (the image is already on the host).
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

from pyinfra.operations import apt, docker, files, server, systemd

declared = json.loads(Path(os.environ["TFENV_BENCH_DECLARED"]).read_text())
container = declared["container"]

apt.packages(
    name="Pinned packages",
    packages=[f"{name}={version}" for name, version in declared["packages"].items()],
    present=True,
    _sudo=True,
)
for entry in declared["files"]:
    files.put(
        name=f"File {entry['path']}",
        src=io.BytesIO(base64.b64decode(entry["content"])),
        dest=entry["path"],
        mode=entry["mode"],
        user=entry["owner"],
        group=entry["group"],
        _sudo=True,
    )
for unit in declared["units"]:
    systemd.service(
        name=f"Unit {unit}",
        service=unit,
        running=True,
        enabled=None if unit.endswith(".mount") else True,  # a mount unit: as tfenv left it
        _sudo=True,
    )
docker.image(name="Image, by digest", image=container["image"], present=True, _sudo=True)
docker.container(
    name="Dev container",
    container=container["name"],
    image=container["image"],
    ports=container["ports"],
    volumes=container["binds"],
    env_vars=container["env"],
    labels=[f"{k}={v}" for k, v in container["labels"].items()],
    restart_policy=container["restart_policy"],
    user=container["user"],
    present=True,
    start=True,
    _sudo=True,
)
server.shell(
    name="Health: the driver answers, the container's sshd and GPUs",
    commands=[
        "nvidia-smi -L",
        f"docker exec {container['name']} nvidia-smi -L",
    ],
    _sudo=True,
)
