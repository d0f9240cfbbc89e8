"""Hooks into a pyinfra CLI run: validate every targeted host before any connects.

pyinfra executes ``config.py`` (from the directory it runs in) before it
connects; ours registers :class:`ValidateBeforeConnect`, so bad data stops
the run with one line per problem and zero SSH connections.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import gevent
from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.state import BaseStateCallback

from tfenv.model.inventory import validate_hosts
from tfenv.model.load import warning_text
from tfenv.model.problems import format_problems
from tfenv.reconcile.check import parse_shard, shard_of
from tfenv.reconcile.collect import CollectConnectErrors, collecting
from tfenv.reconcile.env import GATE_ENV, SHARD_ENV


class InvalidDeclaredData(PyinfraError):
    """The declared data has problems; nothing was contacted."""


def validate_state(state) -> None:
    """Validate every host of the run, once, before any connection.

    Raises :class:`InvalidDeclaredData` (pyinfra prints it once, no traceback,
    exit 1) on any problem, and also when validation itself fails unexpectedly:
    no host is contacted on data tfenv could not check.
    """
    hosts = [h for h in state.inventory if state.is_host_in_limit(h)]
    base = Path(getattr(state, "cwd", None) or os.getcwd())
    try:
        specs, problems = validate_hosts(hosts, base)
        cautions = warning_text(specs.values(), "tfenv: ")
    except Exception as exc:  # a bug in tfenv must not let the run connect
        raise InvalidDeclaredData(
            "tfenv: could not validate the declared data "
            f"({type(exc).__name__}: {str(exc)[:200]}); no host was contacted. "
            "Run tfenv validate INVENTORY for details, and report this as a tfenv bug."
        ) from None
    if cautions:
        logger.warning(cautions)
    if problems:
        bad = len({p.host for p in problems})
        raise InvalidDeclaredData(
            "tfenv: the declared data has problems; no host was contacted.\n"
            + format_problems(problems)
            + f"\n{len(problems)} problem(s) on {bad} of {len(hosts)} host(s). "
            "Fix the fields above (tfenv validate INVENTORY checks them)."
        )


def connection_lost(host, settle: float = 1.0) -> bool:
    """Whether ``host``'s SSH connection is gone (closed or reset by the other end).
    Waits up to ``settle`` seconds for paramiko's reader to notice the end."""
    client = getattr(getattr(host, "connector", None), "client", None)
    if client is None or not hasattr(client, "get_transport"):
        return False  # not SSH (@local, @docker): nothing to say
    deadline = time.monotonic() + settle
    while True:
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            return True
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(0.1)


class ReportLostHosts(BaseStateCallback):
    """pyinfra says only "Error: executed 0 commands" when a host goes away in
    the middle of an operation: say what happened and what to do, once per host."""

    def __init__(self) -> None:
        self.told: set[str] = set()

    def operation_host_error(  # type: ignore[override]  # pyinfra passes the State first
        self, state, host, op_hash, retry_count: int = 0, max_retries: int = 0
    ) -> None:
        if host.name in self.told or not connection_lost(host):
            return
        self.told.add(host.name)
        names = ", ".join(state.get_op_meta(op_hash).names) or "an operation"
        host.log_styled(
            f"Error: lost the SSH connection during '{names}': the host went down, "
            "rebooted or dropped off the network. Nothing more runs on it in this run; "
            "the other hosts go on. When it answers again, run the deploy again: a "
            "container replacement it was in the middle of is repaired then.",
            fg="red",
            log_func=logger.error,
        )


def install(state) -> None:
    """Validate right after pyinfra's ``State.init`` (idempotent).

    ``config.py`` runs before ``State.init`` has the inventory; pyinfra calls
    ``init`` once, in its main thread, just before it connects: validating
    there (not in a per-host callback, which runs in every host's greenlet)
    stops the run with one message.
    """
    real = state._get_module() if hasattr(state, "_get_module") else state
    if getattr(real, "_tfenv_validation_installed", False):
        return
    real._tfenv_validation_installed = True
    original_init = _shard_and_gate(real.init)

    def init(*args, **kwargs):
        original_init(*args, **kwargs)
        # debug-inventory only prints the data (it never connects): it must
        # work on data that does not validate yet, to help fix it.
        if "debug-inventory" not in sys.argv[1:]:
            validate_state(real)
        real.add_callback_handler(ReportLostHosts())
        if collecting():  # tfenv reconcile's pyinfra --dry
            real.add_callback_handler(CollectConnectErrors())
        wait_for_go()

    real.init = init


def _shard_and_gate(original_init):  # type: ignore[no-untyped-def]
    """For tfenv reconcile's runs: only the hosts of ``$TFENV_RECONCILE_SHARD``, and no
    connection before the reconcile command says "go" (it validates meanwhile)."""

    def init(inventory, config, initial_limit=None, **kwargs):  # type: ignore[no-untyped-def]
        shard = os.environ.get(SHARD_ENV)
        if shard:
            k, n = parse_shard(shard)
            pool = initial_limit if initial_limit is not None else list(inventory)
            initial_limit = [h for h in pool if shard_of(h.name, n) == k]
        return original_init(inventory, config, initial_limit=initial_limit, **kwargs)

    return init


def wait_for_go() -> None:
    """Block until tfenv reconcile writes "go" to ``$TFENV_RECONCILE_GATE``; anything
    else (its validation failed, it died) stops this run before any connection."""
    gate = os.environ.get(GATE_ENV)
    if not gate:
        return
    received = b""
    with os.fdopen(int(gate), "rb", buffering=0, closefd=False) as pipe:
        while len(received) < 2:
            chunk = pipe.read(2 - len(received))
            if not chunk:
                break
            received += chunk
    if received != b"go":
        raise InvalidDeclaredData("tfenv reconcile stopped this run before it connected")
