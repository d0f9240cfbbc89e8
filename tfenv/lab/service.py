"""Lab service containers (registry, simulated apt repositories, simulated NFS server).

Each one carries the lab's label and a ``tfenv.lab.role``, sits on the lab
network under a ``*.lab.test`` alias (``.test`` is reserved: it never leaves
the lab) and is re-created when its image changes.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tfenv.lab.progress import say, step
from tfenv.lab.run import LabError, run


@dataclass(frozen=True)
class Found:
    """What ``docker ps`` said about an existing service container."""

    state: str
    image: str


def ensure_service(
    *,
    container: str,
    role: str,
    alias: str,
    image: str,
    found: Found | None,
    lab_label: str,
    lab_dir: Path,
    network: str,
    run_args: Sequence[str],
    what: str,
) -> None:
    """Start (or keep, or re-create on a new image) one service container."""
    if found is not None and found.image != image:
        say(f"    {role}: image changed ({found.image} -> {image}); re-creating")
        run(["docker", "rm", "-f", "-v", container])
        found = None
    if found is None:
        with step(f"Starting {what}"):
            run(
                [
                    "docker", "run", "-d", "--name", container,
                    "--label", lab_label, "--label", f"tfenv.lab.dir={lab_dir.resolve()}",
                    "--label", f"tfenv.lab.role={role}",
                    "--network", network, "--network-alias", alias,
                    "--restart", "unless-stopped",
                    *run_args, image,
                ]
            )  # fmt: skip
    elif found.state != "running":
        run(["docker", "start", container])


def free_port(previous: int | None = None) -> int:
    """A port on 127.0.0.1 to publish a lab container on: ``previous`` when still free,
    else any free one. Fixed at creation (``-p 127.0.0.1:PORT:...``), so the container
    keeps it across a stop and start, where an ephemeral ``-p 127.0.0.1::...`` may change
    and leave the lab's state (and everything that reads it) pointing at the old one."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", previous or 0))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def published_port(container: str, port: int) -> int:
    out = run(["docker", "port", container, f"{port}/tcp"]).stdout.split()
    if not out:
        raise LabError(f"{container} publishes no port {port}; run: tfenv lab down && tfenv lab up")
    return int(out[0].rsplit(":", 1)[1])
