"""What this pyinfra run already did on the current host: did anything change?

A host where nothing changed in this run gets the light health check (what
the facts read, plus one probe of the running containers); one where
something changed (driver, toolkit, Docker, a container replaced), or where
a person asked for it, gets the deep one (a throwaway GPU container, a real
TensorFlow op in each container).
"""

from __future__ import annotations

import os

from tfenv.reconcile.env import DEEP_ENV

HEALTH_KEY = "health"  # host data: --data health=deep asks for the deep checks
DEEP = "deep"


def changed_in_this_run(host) -> bool:  # type: ignore[no-untyped-def]
    """Whether an operation already executed on ``host`` in this run changed something."""
    for op_hash in host.op_hash_order:
        data = host.state.ops.get(host, {}).get(op_hash)
        if data is None:
            continue
        meta = data.operation_meta
        if meta.is_complete() and meta.did_change():
            return True
    return False


def deep_requested(host) -> bool:  # type: ignore[no-untyped-def]
    """``--data health=deep`` on the deploy, or ``tfenv reconcile --deep``."""
    return str(host.data.get(HEALTH_KEY, "")) == DEEP or os.environ.get(DEEP_ENV) == "1"


def deep_checks(host) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    """(deep?, why), at execute time."""
    if deep_requested(host):
        return True, "asked for (health=deep)"
    if changed_in_this_run(host):
        return True, "something changed on this host in this run"
    return False, "nothing changed on this host in this run; --data health=deep for all checks"
