"""An oracle for unit tests (not a Docker stand-in for deploys): what ``docker inspect``
shows for a container made by a rendered ``docker run``.

Independent of the option table on purpose: the rendered command is split as
a shell would (``shlex``), and each flag is turned into its inspect field the
way Docker records it (the shapes of the real capture in
tests/fixtures/docker_inspect/dev.json). A test can then read the result back
with the fact's own reduction and compare: a value lost between the declared
data, the ``docker run`` arguments and the reading shows up as drift.
"""

from __future__ import annotations

import csv
import shlex
from typing import Any

from pyinfra.api import StringCommand

from tfenv.containers.desired import DesiredContainer
from tfenv.containers.options import run_arguments

# docker run's flags that take no value (every other flag here takes one).
NO_VALUE = frozenset({"--read-only"})


def rendered(desired: DesiredContainer) -> str:
    """The ``docker run`` arguments exactly as the host's shell gets them."""
    return StringCommand(*run_arguments(desired)).get_raw_value()


def _csv_fields(value: str) -> list[str]:
    """Docker reads --gpus and --mount values as one CSV record."""
    return next(csv.reader([value]))


def _device_request(value: str) -> dict[str, Any]:
    request: dict[str, Any] = {"Driver": "", "Count": 0, "DeviceIDs": None,
                               "Capabilities": [["gpu"]], "Options": {}}  # fmt: skip
    for field in _csv_fields(value):
        if field == "all":
            request["Count"] = -1
        elif field.startswith("device="):
            request["DeviceIDs"] = field.removeprefix("device=").split(",")
        else:
            request["Count"] = int(field)
    return request


def _mount(value: str) -> dict[str, Any]:
    mount: dict[str, Any] = {}
    for field in _csv_fields(value):
        key, _, setting = field.partition("=")
        if key == "type":
            mount["Type"] = setting
        elif key == "source":
            mount["Source"] = setting
        elif key == "target":
            mount["Target"] = setting
        elif key == "readonly":  # Docker leaves ReadOnly out when it is false
            mount["ReadOnly"] = True
        else:
            raise ValueError(f"mount field {field!r}")
    return mount


def inspect_after_run(
    arguments: str, image_env: dict[str, str], image_labels: dict[str, str]
) -> dict[str, Any]:
    """One ``docker inspect`` entry for ``docker run -d ARGUMENTS`` of an image whose
    own configuration sets ``image_env`` and ``image_labels`` (the run's win)."""
    words = shlex.split(arguments)
    *flags, image = words
    env = dict(image_env)
    labels = dict(image_labels)
    config: dict[str, Any] = {"Image": image, "User": "", "Healthcheck": None}
    host: dict[str, Any] = {"PortBindings": {}, "CapAdd": None, "CapDrop": None,
                            "SecurityOpt": None, "Ulimits": None, "Mounts": [],
                            "DeviceRequests": None, "ReadonlyRootfs": False,
                            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                            "ShmSize": 64 * 1024 * 1024}  # fmt: skip
    entry: dict[str, Any] = {"Name": "", "Config": config, "HostConfig": host,
                             "State": {"Running": True, "Status": "running"}}  # fmt: skip
    index = 0
    while index < len(flags):
        flag = flags[index]
        if not flag.startswith("--"):
            raise ValueError(f"a flag before the image, not {flag!r} (a value split in two?)")
        value = "" if flag in NO_VALUE else flags[index + 1]
        index += 1 if flag in NO_VALUE else 2
        if flag == "--name":
            entry["Name"] = "/" + value
        elif flag == "--user":
            config["User"] = value
        elif flag == "--env":
            name, _, setting = value.partition("=")
            env[name] = setting
        elif flag == "--label":
            key, _, setting = value.partition("=")
            labels[key] = setting
        elif flag == "--publish":
            address, host_port, container_port = value.rsplit(":", 2)
            host["PortBindings"].setdefault(container_port, []).append(
                {"HostIp": address, "HostPort": host_port}
            )
        elif flag == "--gpus":
            host["DeviceRequests"] = [_device_request(value)]
        elif flag == "--shm-size":
            host["ShmSize"] = int(value)
        elif flag == "--ulimit":
            name, _, limits = value.partition("=")
            soft, _, hard = limits.partition(":")
            host["Ulimits"] = [*(host["Ulimits"] or []),
                               {"Name": name, "Soft": int(soft), "Hard": int(hard)}]  # fmt: skip
        elif flag == "--restart":
            name, _, retries = value.partition(":")
            host["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(retries or 0)}
        elif flag == "--mount":
            host["Mounts"].append(_mount(value))
        elif flag == "--tmpfs":
            host.setdefault("Tmpfs", {})[value] = ""
        elif flag == "--read-only":
            host["ReadonlyRootfs"] = True
        elif flag in ("--cap-add", "--cap-drop", "--security-opt"):
            key = {"--cap-add": "CapAdd", "--cap-drop": "CapDrop"}.get(flag, "SecurityOpt")
            host[key] = [*(host[key] or []), value]
        elif flag == "--health-cmd":
            config["Healthcheck"] = {**(config["Healthcheck"] or {}), "Test": ["CMD-SHELL", value]}
        elif flag == "--health-interval":  # Docker keeps nanoseconds
            seconds = int(value.removesuffix("s"))
            config["Healthcheck"] = {**(config["Healthcheck"] or {}), "Interval": seconds * 10**9}
        elif flag in ("--health-timeout", "--health-start-period", "--health-retries"):
            pass  # not part of what tfenv compares
        else:
            raise ValueError(f"a docker run flag this oracle knows, not {flag!r}")
    config["Env"] = [f"{name}={setting}" for name, setting in env.items()]
    config["Labels"] = labels
    return entry
