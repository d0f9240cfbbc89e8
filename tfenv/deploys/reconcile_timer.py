"""A control node's nightly ``tfenv reconcile``: its user, directories, service and timer.

The control node must already have tfenv (``reconcile.tfenv``) and the fleet's
project (``reconcile.workdir``: inventories/, group_data/, deploys/, config.py)
with an SSH key the service user can read.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files, server, systemd

from tfenv.model.problems import SpecError, format_problems
from tfenv.model.reconcile_timer import ReconcileTimer, load_timer
from tfenv.reconcile.timer import SERVICE_PATH, TIMER_PATH, UNIT, service_unit, timer_unit


def timer_spec(host_name: str, data: object) -> ReconcileTimer:
    try:
        return load_timer(host_name, data)
    except SpecError as exc:
        raise DeployError(
            f"{host_name}: invalid declared data:\n{format_problems(exc.problems)}"
        ) from None


@deploy("Nightly tfenv reconcile")
def reconcile_timer(spec: ReconcileTimer) -> None:
    server.user(
        name=f"User {spec.user} (runs the reconcile; not root)",
        user=spec.user, system=True, home=f"/var/lib/{spec.user}", create_home=True,
        shell="/usr/sbin/nologin",
    )  # fmt: skip
    for path, mode in ((spec.state_dir, "0700"), (spec.report_dir, "0755")):
        # Reports are read by node_exporter's textfile collector: world-readable.
        files.directory(name=f"Directory {path}", path=path, user=spec.user,
                        group=spec.user, mode=mode)  # fmt: skip
    units = [
        files.put(name=f"{path}", src=StringIO(text), dest=path, mode="0644",
                  user="root", group="root")
        for path, text in ((SERVICE_PATH, service_unit(spec)), (TIMER_PATH, timer_unit(spec)))
    ]  # fmt: skip
    systemd.service(
        name=f"Timer {UNIT}.timer ({spec.schedule})",
        service=f"{UNIT}.timer",
        running=True,
        enabled=True,
        daemon_reload=any(unit.will_change for unit in units),
    )


def reconcile_timer_for_host() -> None:
    reconcile_timer(timer_spec(host.name, host.data.get("reconcile")))
