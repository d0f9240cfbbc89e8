"""The systemd service and timer of a nightly ``tfenv reconcile`` on a control node."""

from __future__ import annotations

from tfenv.model.reconcile_timer import ReconcileTimer

UNIT = "tfenv-reconcile"
SERVICE_PATH = f"/etc/systemd/system/{UNIT}.service"
TIMER_PATH = f"/etc/systemd/system/{UNIT}.timer"


def command(spec: ReconcileTimer) -> str:
    words = [spec.tfenv, "reconcile", spec.inventory, "--quiet", "--report-dir", spec.report_dir]
    if spec.apply:
        words.append("--apply")
    if spec.shard:
        words += ["--shard", spec.shard]
    return " ".join(words)  # every word is grammar-checked: no quoting needed


def service_unit(spec: ReconcileTimer) -> str:
    return f"""\
# Managed by tfenv (deploys/reconcile_timer.py).
[Unit]
Description=tfenv reconcile of {spec.inventory}
Wants=network-online.target
After=network-online.target

[Service]
# oneshot: a start while a run is active joins it, so two runs never overlap
# (tfenv's own lock on the state directory covers runs started by hand).
Type=oneshot
User={spec.user}
Group={spec.user}
WorkingDirectory={spec.workdir}
Environment=TFENV_STATE_DIR={spec.state_dir}
ExecStart={command(spec)}
# 2 means drift was found: the check itself worked. 1 (a host not checked) and
# 3 (bad input) fail the unit, so monitoring of failed units sees them.
SuccessExitStatus=2
NoNewPrivileges=true
PrivateTmp=true
"""


def timer_unit(spec: ReconcileTimer) -> str:
    return f"""\
# Managed by tfenv (deploys/reconcile_timer.py).
[Unit]
Description=Nightly tfenv reconcile of {spec.inventory}

[Timer]
OnCalendar={spec.schedule}
# A run missed while the control node was off runs at its next boot.
Persistent=true
# Spread control nodes (shards) so they do not start the same second.
RandomizedDelaySec={spec.randomized_delay}
Unit={UNIT}.service

[Install]
WantedBy=timers.target
"""
