"""NFS mounts as systemd mount units, up before Docker starts any container."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from tfenv.drift import record
from tfenv.facts.gpu import GpuHostState, gpu_host
from tfenv.facts.tf_node import TfNodeState, tf_node
from tfenv.layout import UNIT_MARKER
from tfenv.operations.config_file import write_file

UNIT_DIR = "/etc/systemd/system"


def unit_name(mount_point: str) -> str:
    """What ``systemd-escape --path --suffix=mount`` prints for ``mount_point``."""
    path = re.sub("/+", "/", mount_point).strip("/")
    if not path:
        return "-.mount"
    escaped = []
    for index, char in enumerate(path):
        if char == "/":
            escaped.append("-")
        elif (char.isascii() and (char.isalnum() or char in ":_")) or (char == "." and index):
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(escaped) + ".mount"


def unit_text(name: str, server: str, export: str, mount_point: str, options: Sequence[str]) -> str:
    all_options = [*options, *(["_netdev"] if "_netdev" not in options else [])]
    return (
        f"{UNIT_MARKER}\n"
        "[Unit]\n"
        f"Description=tfenv NFS mount {name} ({server}:{export})\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "# Containers with a restart policy start with Docker: the export comes first.\n"
        "Before=docker.service\n"
        "\n"
        "[Mount]\n"
        f"What={server}:{export}\n"
        f"Where={mount_point}\n"
        "Type=nfs\n"
        f"Options={','.join(all_options)}\n"
        "TimeoutSec=60\n"
        "\n"
        "[Install]\n"
        "WantedBy=remote-fs.target\n"
    )


def _options(text: str) -> str:
    """The mount unit's What/Where/Options lines, for a drift report."""
    keys = ("What=", "Where=", "Options=")
    return "; ".join(line for line in text.splitlines() if line.startswith(keys)) or "(none)"


def _mount(server: str, export: str, mount_point: str) -> StringCommand:
    """(Re)start the mount unit; if it fails, say what and what to do."""
    unit = unit_name(mount_point)
    message = (
        f"tfenv: could not mount {server}:{export} on {mount_point}: is the NFS server up and "
        f"exporting it to this host? See: systemctl status {unit}; journalctl -u {unit}. "
        "Containers whose home or checkpoints live there are not started or replaced, so "
        "nothing meant for the export is written to the local disk."
    )
    return StringCommand(
        "systemctl", "restart", QuoteString(unit), "||",
        "{", "echo", QuoteString(message), ">&2;", "exit", "1;", "}",
    )  # fmt: skip


@operation()
def nfs_mount(
    mount_name: str,
    server: str,
    export: str,
    mount_point: str,
    options: Sequence[str] = ("hard", "nfsvers=4.1"),
    observed: TfNodeState | None = None,
    observed_host: GpuHostState | None = None,
):
    """
    Mount an NFS export with a systemd mount unit, ordered before Docker.

    + mount_name: the entry's name in ``nfs_mounts`` (for the unit's description)
    + server: the NFS server's host name or address
    + export: the exported path
    + mount_point: where it is mounted on the host
    + options: mount options (``hard``, ``nfsvers=4.1``, ...); ``_netdev`` is added
    + observed: the host's TfNodeState, if already read
    + observed_host: the host's GpuHostState (for nfs-common), if already read

    **Example:**

    .. code:: python

        nfs_mount(
            name="NFS checkpoints",
            mount_name="checkpoints",
            server="nfs.example.internal",
            export="/export/checkpoints",
            mount_point="/mnt/checkpoints",
        )
    """
    if not mount_point.startswith("/") or mount_point.rstrip("/") == "":
        raise OperationError(f"mount_point {mount_point!r}: expected an absolute path, not /")
    state = observed or tf_node(host)
    packages = observed_host or gpu_host(host)
    mount_point = mount_point.rstrip("/")
    unit = f"{UNIT_DIR}/{unit_name(mount_point)}"
    text = unit_text(mount_name, server, export, mount_point, options)
    if not packages.installed("nfs-common"):
        record("nfs", "nfs-common", "installed", "absent")
        yield StringCommand(
            "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "nfs-common"
        )
    current = state.units.get(unit)
    source = state.mounted.get(mount_point, ("", ""))[0]
    if current is None or current.text != text:
        if current is None:
            record("nfs", f"{unit_name(mount_point)}.unit", "present", "absent")
        else:
            declared, found = _options(text), _options(current.text)
            record("nfs", f"{unit_name(mount_point)}.options", declared, found)
        yield StringCommand("install", "-d", "-m", "0755", QuoteString(mount_point))
        yield from write_file(unit, text)
        yield StringCommand("systemctl", "daemon-reload")
        yield StringCommand("systemctl", "enable", QuoteString(unit_name(mount_point)))
        yield _mount(server, export, mount_point)
    elif current.active != "active" or source != f"{server}:{export}":
        mounted = f"{source} ({current.active})" if source else f"not mounted ({current.active})"
        record("nfs", f"{mount_point}.mounted", f"{server}:{export}", mounted)
        yield StringCommand("systemctl", "reset-failed", QuoteString(unit_name(mount_point)))
        yield _mount(server, export, mount_point)
    else:
        host.noop(f"{server}:{export} is mounted on {mount_point}")
