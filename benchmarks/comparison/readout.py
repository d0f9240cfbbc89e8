"""Run ON a provisioned lab host (``sudo python3 - CONTAINER``), by benchmarks/fleet.py.

Prints, as one JSON object, the state tfenv's deploy left there, in the terms a
hand-written Ansible playbook or plain pyinfra deploy declares it: held
packages and their versions, the config files tfenv wrote (contents base64),
the units it keeps running, and the dev container's ``docker run`` options.
Both comparison deploys declare exactly this, so they check the same state as
tfenv. Standard library only; reads, never writes. Secret files are left out
(their paths only).
"""

from __future__ import annotations

import base64
import glob
import grp
import json
import os
import pwd
import re
import subprocess
import sys

MARKER = "# Managed by tfenv"


def sh(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def file_entry(path: str) -> dict:
    st = os.stat(path)
    with open(path, "rb") as handle:
        content = handle.read()
    return {
        "path": path,
        "mode": f"{st.st_mode & 0o7777:04o}",
        "owner": pwd.getpwuid(st.st_uid).pw_name,
        "group": grp.getgrgid(st.st_gid).gr_name,
        "content": base64.b64encode(content).decode(),
    }


def main(container: str) -> None:
    held = sh(["apt-mark", "showhold"]).split()
    packages = {
        name: sh(["dpkg-query", "-W", "-f=${Version}", name]).strip() for name in sorted(held)
    }
    paths = sorted(
        set(
            glob.glob("/etc/apt/sources.list.d/*")
            + glob.glob("/etc/apt/preferences.d/tfenv-*")
            + glob.glob("/etc/modprobe.d/tfenv-*")
            + glob.glob("/etc/docker/daemon.json")
            + [f"/etc/tfenv/containers/{container}/{n}" for n in ("passwd", "group",
                                                                   "authorized_keys")]
        )
    )  # fmt: skip
    for source in list(paths):  # the keyrings the sources name
        if source.startswith("/etc/apt/sources.list.d/"):
            with open(source) as handle:
                paths += re.findall(r"signed-by=(\S+?)[\] ]", handle.read())
    units = ["docker.service"]
    if os.path.exists("/etc/systemd/system/multi-user.target.wants/nvidia-persistenced.service"):
        units.append("nvidia-persistenced.service")
    for unit in sorted(glob.glob("/etc/systemd/system/*.mount")):
        with open(unit) as handle:
            if handle.readline().startswith(MARKER):
                paths.append(unit)
                units.append(os.path.basename(unit))
    files = [file_entry(p) for p in sorted(set(paths)) if os.path.isfile(p)]
    inspect = json.loads(sh(["docker", "inspect", container]))[0]
    config, hostconfig = inspect["Config"], inspect["HostConfig"]
    ports = sorted(
        f"{binding[0]['HostIp'] + ':' if binding[0]['HostIp'] else ''}"
        f"{binding[0]['HostPort']}:{port.split('/')[0]}"
        for port, binding in (hostconfig.get("PortBindings") or {}).items()
        if binding
    )
    print(json.dumps({
        "packages": packages,
        "files": files,
        "units": units,
        "container": {
            "name": container,
            "image": config["Image"],
            "user": config.get("User") or "",
            "ports": ports,
            "binds": hostconfig.get("Binds") or [],
            "mounts": [m for m in hostconfig.get("Mounts") or []],
            "env": [e for e in config.get("Env") or [] if not e.startswith("PATH=")],
            "restart_policy": hostconfig["RestartPolicy"]["Name"],
            "shm_size": hostconfig.get("ShmSize"),
            "gpus": bool(hostconfig.get("DeviceRequests")),
            "labels": config.get("Labels") or {},
            "hostname": config.get("Hostname"),
        },
    }, sort_keys=True))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dev")
