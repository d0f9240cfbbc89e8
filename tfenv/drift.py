"""Drift as data: each field an operation is about to change, recorded where it decides.

An operation calls :func:`record` for every field that differs from the
declared state, right beside the ``yield`` that fixes it (or, for what it
cannot fix unattended, with ``action="person"`` and the command a person
runs). ``tfenv reconcile`` captures those records per host while it plans the
tf_node deploy (:mod:`tfenv.reconcile.collect`), so the report and the
operations share one definition of drift per area. Outside a capture,
:func:`record` does nothing.

Records name fields and describe values; never a secret's value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

from pyinfra.context import ctx_host

from tfenv.reconcile.env import OUT_ENV
from tfenv.reconcile.report import Item

_captures: dict[str, list[Item]] = {}  # host name -> records while captured


def write_line(line: dict) -> None:
    """Append one result line for tfenv reconcile (one short append per host)."""
    with open(os.environ[OUT_ENV], "a", encoding="utf-8") as out:
        out.write(json.dumps(line, sort_keys=True) + "\n")


def note_failure(host, message: str) -> None:  # type: ignore[no-untyped-def]
    """``host`` failed by an operation while executing (reconcile --deep's probes)."""
    if os.environ.get(OUT_ENV):
        write_line({"host": host.name, "failure": message})


def record(
    area: str,
    field: str,
    declared: object,
    observed: object,
    action: str = "apply",
    command: str = "",
) -> None:
    """Record that ``field`` of ``area`` is ``observed`` where ``declared`` is declared."""
    if not _captures or not ctx_host.isset():
        return
    items = _captures.get(ctx_host.get().name)
    if items is not None:
        items.append(Item(area, field, str(declared), str(observed), action, command))


@contextmanager
def capture(host_name: str) -> Iterator[list[Item]]:
    """Collect what operations record for ``host_name`` inside the block."""
    items: list[Item] = []
    _captures[host_name] = items
    try:
        yield items
    finally:
        _captures.pop(host_name, None)
