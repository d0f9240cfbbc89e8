"""One reconcile run: check, optionally apply and check again, record, report.

The CLI (``tfenv reconcile``) validates the inventory and picks the hosts;
everything after that is here, so tests call it directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from tfenv.reconcile.check import (
    Progress,
    Started,
    apply_hosts,
    busy_data,
    check_hosts,
    probe_hosts,
    results_of,
)
from tfenv.reconcile.files import write_atomic
from tfenv.reconcile.html import render_html
from tfenv.reconcile.prom import render_prom
from tfenv.reconcile.report import HostResult, Item, Report, now_iso

REDACTED = "(redacted)"
BUSY_COMMAND = "in use: wait until it is idle, or now: tfenv reconcile --apply --force-busy"
LOG_NAME = "pyinfra.log"  # the last run's pyinfra output, in the state directory


@dataclass
class Run:
    inventory: str
    deploy: str = "deploys/tf_node.py"
    apply: bool = False
    batch: int = 1
    force_busy: bool = False
    shard: str | None = None
    deep: bool = False  # also each container's health probe (execs a TF op inside)
    log: Path | None = None  # where pyinfra's output of this run goes


def reconcile(
    run: Run,
    hosts: list[str],
    say: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
    checked: Callable[[Report], None] | None = None,
    first: Started | None = None,
) -> Report:
    """Check ``hosts``; with ``run.apply``, apply the deploy to those with drift a
    deploy can fix, check them again, and report the final state. ``checked`` gets
    the check's own report before anything is applied (the history keeps both)."""
    started, clock = now_iso(), time.monotonic()
    if first is not None:  # the CLI's gated check, released already
        results, output = results_of(first.finish(hosts, progress), hosts)
    else:
        results, output = check_hosts(run.inventory, run.deploy, hosts, progress, run.deep,
                                      busy_data(run.force_busy))  # fmt: skip
    outputs = [output]
    if run.apply:
        fixable = [
            name
            for name, result in sorted(results.items())
            if any(item.action == "apply" for item in result.items)
        ]
        if fixable and checked:
            checked(_report(run, started, clock, results, applied=False))
        if fixable:
            outcome, applied = apply_hosts(
                run.inventory, run.deploy, fixable, run.batch, run.force_busy, say
            )
            say(f"checking the {len(fixable)} applied host(s) again")
            again, output = check_hosts(run.inventory, run.deploy, fixable, progress, run.deep,
                                        busy_data(run.force_busy))  # fmt: skip
            outputs += [applied, output]
            for name in fixable:
                results[name] = again[name]
                results[name].applied = outcome[name]
                if "replacement pending" in outcome[name]:
                    results[name].items = [_in_use(item) for item in results[name].items]
        else:
            say("nothing to apply: no host has drift a deploy fixes unattended")
    if run.deep:
        checked = sorted(name for name, result in results.items() if result.checked)
        say(f"--deep: health probe of every container on {len(checked)} host(s)")
        found, output = probe_hosts(run.inventory, checked)
        outputs.append(output)
        for name, extra in found.items():
            results[name].items += extra
    if run.log:
        write_atomic(run.log, "\n".join(outputs), mode=0o600)
    return _report(run, started, clock, results, applied=run.apply)


def _report(
    run: Run, started: str, clock: float, results: dict[str, HostResult], applied: bool
) -> Report:
    return Report(
        inventory=run.inventory,
        started=started,
        finished=now_iso(),
        duration_s=time.monotonic() - clock,
        shard=run.shard,
        apply=applied,
        deep=run.deep,
        hosts={name: replace(result, items=list(result.items)) for name, result in results.items()},
    )


def _in_use(item: Item) -> Item:
    """A container change the deploy held off because someone uses the container
    (its check found a session, kernel or GPU process): a person decides."""
    if item.area != "containers" or item.action != "apply":
        return item
    return replace(item, action="person", command=BUSY_COMMAND)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every declared secret value replaced (defence in depth: reports
    are built from field names and descriptions, never values)."""
    for value in sorted(set(secrets), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text


def render_all(report: Report, secrets: Iterable[str] = ()) -> dict[str, str]:
    """File name -> text of the three reports."""
    values = list(secrets)
    return {
        "report.json": redact(json.dumps(report.to_json(), indent=1) + "\n", values),
        "report.html": redact(render_html(report), values),
        "tfenv.prom": redact(render_prom(report), values),
    }


def write_reports(directory: Path, texts: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        write_atomic(directory / name, text)


def summary(report: Report) -> str:
    """Lines for a person: each host that is not clean, its items, then the totals."""
    lines = []
    for name, host in sorted(report.hosts.items()):
        if not host.checked:
            lines.append(f"{name}: NOT CHECKED: {host.error}")
            continue
        applied = f" ({host.applied})" if host.applied else ""
        lines.append(f"{name}: {host.status}{applied}")
        for item in host.items:
            since = f" since {item.first_seen}" if item.first_seen else ""
            lines.append(
                f"    {item.area} {item.field}: declared {item.declared}, "
                f"observed {item.observed}{since}"
            )
            if item.action == "person":
                lines.append(f"      needs a person: {item.command}")
    totals = report.totals
    lines.append(
        f"{totals['hosts']} host(s): {totals['clean']} clean, {totals['drift']} with drift, "
        f"{totals['needs_a_person']} needing a person, {totals['unreachable']} not checked, "
        f"{totals['rollout_in_progress']} in a rollout; "
        f"{totals['items']} drift item(s); exit {report.exit_code}"
    )
    return "\n".join(lines)
