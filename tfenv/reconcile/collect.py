"""The reconcile side of one ``pyinfra --dry`` run: each host's drift, as JSON lines.

``tfenv reconcile`` runs the tf_node deploy with ``--dry`` and
``TFENV_RECONCILE_OUT`` set. At the end of each host's planning the deploy
calls :func:`host_done`, which runs each of the host's planned operations
once more inside :func:`tfenv.drift.capture` (the same generators pyinfra
just ran to detect changes; planning is side-effect free) and writes one
line: the host and its items. Hosts pyinfra could not connect to get a line
with the error (:class:`CollectConnectErrors`). A host with no line was not
checked.

An operation that would change something but recorded no field still shows,
as an "operation" item: the report never says clean where ``--dry`` would
change something.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from pyinfra.api import FunctionCommand
from pyinfra.api.state import BaseStateCallback

from tfenv.drift import capture, write_line
from tfenv.operations.failure import report_failure
from tfenv.reconcile.env import DEEP_ENV, OUT_ENV
from tfenv.reconcile.report import Item

# The area of an operation that records no field of its own, by its name's start.
AREA_OF_OPERATION = (
    ("Clock", "clock"),
    ("Docker engine", "docker"),
    ("NVIDIA driver", "driver"),
    ("Reboot for the NVIDIA driver", "driver"),
    ("Check the NVIDIA driver", "driver"),
    ("NVIDIA container toolkit", "toolkit"),
    ("Check a container sees the GPUs", "toolkit"),
    ("Registry logins", "registry"),
    ("Pull ", "images"),
    ("NFS mount", "nfs"),
    ("Secret files", "secrets"),
    ("Container ", "containers"),
    ("Health of", "containers"),
    ("Pending replacements", "containers"),
)
FIX_AND_RERUN = "fix what the message says, then run the tf_node deploy on it"


def collecting() -> bool:
    return bool(os.environ.get(OUT_ENV))


def exec_allowed() -> bool:
    """Whether the run may exec inside containers: always, except reconcile's check
    without --deep (the busy probe then skips Jupyter; a replacement re-checks all)."""
    return not collecting() or os.environ.get(DEEP_ENV) == "1"


def area_of(name: str) -> str:
    return next((area for start, area in AREA_OF_OPERATION if name.startswith(start)), "other")


def operation_items(state, host) -> list[Item]:
    """The drift items of every operation planned for ``host``, in order."""
    items: list[Item] = []
    for op_hash, op_data in state.ops[host].items():
        name = ", ".join(sorted(state.op_meta[op_hash].names)) or op_hash
        ifs = op_data.global_arguments.get("_if")
        with capture(host.name) as recorded:
            due = all(f() for f in (ifs if isinstance(ifs, list) else [ifs])) if ifs else True
            commands = list(op_data.command_generator())
        changes = due and bool(commands)
        failures = [
            c for c in commands if isinstance(c, FunctionCommand) and c.function is report_failure
        ]
        area = area_of(name)
        for failure in failures:  # fail_host: the operation refuses; a person decides
            message = str(failure.args[0])
            items.append(Item(area, "check", "passes", message, "person", FIX_AND_RERUN))
        # What a person must do, and what a rollout in progress put there, count
        # whether or not the operation would change something.
        items += [item for item in recorded if item.action in ("person", "rollout") or changes]
        if changes and not recorded and not failures:
            items.append(Item(area, "operation", "no change", f"would run: {name}"))
    return items


def host_done(state, host, extra: list[Item]) -> None:
    """Write ``host``'s line: its operations' drift items plus ``extra`` (no-op unless
    ``TFENV_RECONCILE_OUT`` is set)."""
    if not collecting():
        return
    items = operation_items(state, host) + extra
    write_line({"host": host.name, "items": [asdict(item) for item in items]})


class CollectConnectErrors(BaseStateCallback):
    """A line for each host pyinfra could not connect to (refused host key included)."""

    @staticmethod
    def host_connect_error(state, host, error) -> None:  # type: ignore[override]
        # While operations run, a failed connect is a reboot's reconnect loop trying
        # again (its host fails on its own if it never comes back), not an answer.
        if state.is_executing:
            return
        write_line({"host": host.name, "error": f"could not connect: {error}"})
