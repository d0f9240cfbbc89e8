"""Load a pyinfra inventory (and its group_data) the way the pyinfra CLI does,
and validate every host in it. Loading never connects to any host."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pyinfra.api import Inventory
from pyinfra.api.host import Host

from tfenv.model.load import load
from tfenv.model.problems import Problem, SpecError
from tfenv.model.reconcile_timer import load_timer
from tfenv.model.spec import NodeSpec


def load_inventory(path: str | Path, cwd: str | Path | None = None) -> Inventory:
    """The inventory at ``path`` with group_data from ``cwd`` and beside the file,
    exactly as ``pyinfra INVENTORY ...`` run from ``cwd`` would build it."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"inventory file {path} not found")
    base = str(Path(cwd or os.getcwd()).resolve())
    # pyinfra executes inventory and group_data files inside a State context;
    # a throwaway one is enough here (it opens no connection).
    state = State(check_for_changes=False)
    state.cwd = base
    with ctx_state.use(state):
        return make_inventory(str(path), cwd=base)


def validate_hosts(
    hosts: Iterable[Host], base_dir: Path
) -> tuple[dict[str, NodeSpec], list[Problem]]:
    """Specs for the hosts that are valid, and every problem of the others."""
    specs: dict[str, NodeSpec] = {}
    problems: list[Problem] = []
    for host in hosts:
        data: dict = {}
        try:
            data = host.data.dict()
            specs[host.name] = load(host.name, data, base_dir)
        except SpecError as exc:
            problems.extend(exc.problems)
        except (RecursionError, MemoryError, ValueError, TypeError, OSError) as exc:
            # Data tfenv could not even check (nesting too deep, a value too large,
            # a file it could not read): one problem, without the value.
            problems.append(
                Problem(
                    host.name,
                    "(declared data)",
                    "data tfenv can read and check",
                    f"{type(exc).__name__} while checking it",
                )
            )
        if "reconcile" in data:  # a control node's nightly reconcile (its own deploy)
            try:
                load_timer(host.name, data["reconcile"])
            except SpecError as exc:
                problems.extend(exc.problems)
    return specs, problems


def validate_inventory(path: str | Path, cwd: str | Path | None = None) -> list[Problem]:
    base = Path(cwd or os.getcwd()).resolve()
    inventory = load_inventory(path, base)
    return validate_hosts(inventory, base)[1]
