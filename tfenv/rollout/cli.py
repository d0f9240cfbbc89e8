"""``tfenv rollout``: start, watch, resume, promote, roll back a canary rollout.

Thin: validation and the plan come from :mod:`tfenv.rollout.start`, the work
from :class:`tfenv.rollout.run.Controller`, the state from
:mod:`tfenv.rollout.journal`. Exit codes: 0 done (or waiting for promote),
1 a gate failed (paused, or rolled back), 2 paused (a host unreachable or a
container busy; resume later), 3 refused before anything changed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from tfenv.layout import DRIVER_GROUP
from tfenv.reconcile import history
from tfenv.reconcile.files import hold_exclusive
from tfenv.rollout.driver import controller_for
from tfenv.rollout.journal import FINAL, Journal, JournalError, Rollout
from tfenv.rollout.plan import DEFAULT_WAVES, PlanError, parse_duration, parse_waves
from tfenv.rollout.run import EXIT_BAD_INPUT, RolloutError

INVENTORY_OPTION = click.option(
    "--inventory",
    default="inventories/gpu.py",
    show_default=True,
    help="The inventory whose .tfenv/ holds the rollout journal (and whose hosts tell a "
    "rollout started elsewhere).",
)
STATE_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Journal and audit log (default: .tfenv/ by the inventory; TFENV_STATE_DIR).",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="A JSON summary on stdout.")


def _refuse(message: str) -> None:
    click.secho(f"{message}\nNothing was changed (exit 3).", fg="red", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _say(text: str) -> None:
    click.echo(f"rollout: {text}", err=True)


def _journal(inventory: str, state_dir: str | None) -> Journal:
    try:
        return Journal(history.state_dir_for(Path(inventory), state_dir))
    except JournalError as exc:
        _refuse(str(exc))
        raise  # never reached


@contextmanager
def _driving(journal: Journal, container: str) -> Iterator[None]:
    """One tfenv process drives a container group's rollout at a time on this state
    directory (the lock file on the canary host covers other control machines)."""
    handle, holder = hold_exclusive(journal.state_dir / f"rollout-{container}.lock")
    if handle is None:
        _refuse(f"another tfenv rollout ({holder or 'a process'}) is driving "
                f"the {container} rollout from {journal.state_dir}")  # fmt: skip
        return
    try:
        yield
    finally:
        handle.close()


def summary(journal: Journal, rollout: Rollout, code: int) -> dict:
    """The machine-readable summary (--json): the rollout, each host's last steps."""
    hosts: dict[str, dict] = {}
    for step in journal.steps(rollout.id):
        entry = hosts.setdefault(step["host"], {"wave": step["wave"] + 1, "steps": {}})
        entry["steps"][step["step"]] = {"state": step["state"], "at": step["at"],
                                        **step["detail"]}  # fmt: skip
    return {
        "schema": "tfenv.rollout/1",
        "id": rollout.id,
        "container": rollout.container,
        "to": rollout.to_ref,
        "to_image": rollout.to_image,
        "status": rollout.status,
        "reason": rollout.reason,
        "wave": rollout.wave,
        "waves": rollout.waves,
        "exit_code": code,
        "hosts": hosts,
    }


def summary_lines(data: dict) -> list[str]:
    """The final summary for a person: the rollout, then each host's last step."""
    lines = [f"{data['id']}: {data['status']}" + (f" ({data['reason']})" if data["reason"]
                                                  else "")]  # fmt: skip
    for number, wave in enumerate(data["waves"], 1):
        for host in wave:
            steps = data["hosts"].get(host, {}).get("steps", {})
            if not steps:
                lines.append(f"  wave {number}  {host:<20} not started")
                continue
            name, last = list(steps.items())[-1]
            lines.append(f"  wave {number}  {host:<20} {name} {last['state']}")
    return lines


def _finish(journal: Journal, rollout: Rollout, code: int, as_json: bool) -> None:
    data = summary(journal, rollout, code)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo("\n".join(summary_lines(data)))
    sys.exit(code)


@click.group()
def rollout() -> None:
    """Canary rollouts of a new image across the fleet (see docs/rollout.md)."""


@rollout.command("start")
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--container", default=None, help="The declared container to move.")
@click.option("--to", "to_ref", default=None, help="The new image, name:tag.")
@click.option(
    "--driver",
    default=None,
    metavar="VERSION",
    help="Instead of an image: upgrade the NVIDIA driver to VERSION, host by host.",
)
@click.option("--max-unavailable", type=click.IntRange(min=1), default=1, show_default=True,
              help="--driver: hosts of a wave down (stopped, rebooting) at once.")  # fmt: skip
@click.option("--waves", default=DEFAULT_WAVES, show_default=True,
              help="How far each wave goes: hosts or shares, the last one 100%.")  # fmt: skip
@click.option("--bake", default="0", show_default=True,
              help="Wait this long after a wave (90s, 15m), then gate it again.")  # fmt: skip
@click.option("--confirm", is_flag=True, help="Wait for `tfenv rollout promote` between waves.")
@click.option("--on-failure", type=click.Choice(["pause", "rollback"]), default="pause",
              show_default=True, help="On a failed gate: stop there, or roll back.")  # fmt: skip
@click.option("--probe-parallel", type=click.IntRange(min=1), default=None,
              help="Hosts measured at once (default: a whole wave); 1 where hosts share "
              "CPUs (VMs on one hypervisor, the lab).")  # fmt: skip
@click.option("--limit", "limits", multiple=True, metavar="HOST_OR_GROUP",
              help="Only these hosts or groups (repeatable).")  # fmt: skip
@STATE_OPTION
@JSON_OPTION
def start(inventory: str, container: str | None, to_ref: str | None, driver: str | None,
          max_unavailable: int, waves: str, bake: str, confirm: bool, on_failure: str,
          probe_parallel: int | None, limits: tuple[str, ...], state_dir: str | None,
          as_json: bool) -> None:  # fmt: skip
    """Roll CONTAINER of INVENTORY's hosts out to a new image (--container, --to), or
    their NVIDIA driver to a new version (--driver), wave by wave."""
    from tfenv.cli import _load, _matching
    from tfenv.model.inventory import validate_hosts
    from tfenv.model.problems import format_problems
    from tfenv.rollout.start import (
        build_driver_rollout,
        build_rollout,
        driver_plan_text,
        plan_text,
    )

    base = Path(os.getcwd())
    if driver is not None and (container or to_ref):
        _refuse("--driver moves the driver alone: leave out --container and --to")
    if driver is None and not (container and to_ref):
        _refuse("say what to roll out: --container NAME --to IMAGE:TAG, or --driver VERSION")
    group = container or DRIVER_GROUP
    try:
        parse_waves(waves)
        bake_seconds = parse_duration(bake)
    except PlanError as exc:
        _refuse(str(exc))
    if not Path(inventory).is_file():
        _refuse(f"INVENTORY {inventory}: no such file here ({base})")
    hosts = _matching(_load(inventory, base), limits)
    specs, problems = validate_hosts(hosts, base)
    if problems:
        click.echo(format_problems(problems), err=True)
        _refuse(f"{inventory}: {len(problems)} problem(s) in the declared data")
    journal = _journal(inventory, state_dir)
    running = journal.active(group, inventory)
    if running is not None:
        _refuse(f"rollout {running.id} ({running.status}: to {running.to_ref}, "
                f"by {running.owner}) is not finished. Finish it first: tfenv rollout "
                f"resume|rollback {running.id}")  # fmt: skip
    options = {"waves": waves, "bake": bake_seconds, "confirm": confirm, "on_failure": on_failure,
               "probe_parallel": probe_parallel}  # fmt: skip
    try:
        if driver is not None:
            options["max_unavailable"] = max_unavailable
            planned = build_driver_rollout(inventory, hosts, specs, driver, options, base)
        else:
            planned = build_rollout(inventory, hosts, specs, str(container), str(to_ref),
                                    options, base, _say)  # fmt: skip
    except RolloutError as exc:
        _refuse(str(exc))
    click.echo((driver_plan_text if driver else plan_text)(planned), err=True)
    with _driving(journal, group):
        journal.create(planned)
        journal.audit(planned, "start", waves=planned.waves, options=options)
        controller = controller_for(journal, planned, _say)
        try:
            controller.acquire()
        except RolloutError as exc:
            planned.status, planned.reason = "aborted", f"not started: {exc}"
            journal.save(planned)
            journal.audit(planned, "refused", reason=str(exc))
            _refuse(str(exc))
        code = controller.drive()
    _finish(journal, planned, code, as_json)


def _load_rollout(journal: Journal, rollout_id: str, inventory: str | None = None) -> Rollout:
    """The rollout from the journal; failing that (another control machine started
    it), rebuilt from the hosts of ``inventory``: their labels and the lock file."""
    found = journal.get(rollout_id)
    if found is not None:
        return found
    if inventory and Path(inventory).is_file():
        from tfenv.cli import _load
        from tfenv.rollout.run import rebuild

        hosts = sorted(h.name for h in _load(inventory, Path(os.getcwd())))
        try:
            return rebuild(rollout_id, inventory, hosts, journal, _say)
        except RolloutError as exc:
            _refuse(str(exc))
    known = ", ".join(r.id for r in journal.all()[-5:]) or "none"
    _refuse(f"no rollout {rollout_id} in {journal.state_dir} (recent: {known}); pass the "
            "--inventory it ran over (its hosts tell), or --state-dir of its machine")  # fmt: skip
    raise SystemExit(EXIT_BAD_INPUT)


def _continue(rollout_id: str, inventory: str, state_dir: str | None, as_json: bool,
              allowed: tuple[str, ...], verb: str) -> None:  # fmt: skip
    journal = _journal(inventory, state_dir)
    found = _load_rollout(journal, rollout_id, inventory)
    if found.status not in allowed:
        hint = {"waiting": f"it waits for: tfenv rollout promote {found.id}",
                "completed": "it is complete", "aborted": "it was aborted",
                "rolling-back": f"its rollback was cut short; finish it: tfenv rollout "
                                f"rollback {found.id}"}.get(
                    found.status, f"it is {found.status}")  # fmt: skip
        _refuse(f"rollout {found.id} cannot be {verb}d: {hint}")
    with _driving(journal, found.container):
        found = _load_rollout(journal, rollout_id)  # as the last driver left it
        journal.audit(found, verb, wave=found.wave + 1)
        code = controller_for(journal, found, _say).drive()
    _finish(journal, found, code, as_json)


@rollout.command("resume")
@click.argument("rollout_id")
@INVENTORY_OPTION
@STATE_OPTION
@JSON_OPTION
def resume(rollout_id: str, inventory: str, state_dir: str | None, as_json: bool) -> None:
    """Go on with a paused (or interrupted) rollout from where it stopped."""
    _continue(rollout_id, inventory, state_dir, as_json, ("running", "paused"), "resume")


@rollout.command("promote")
@click.argument("rollout_id")
@INVENTORY_OPTION
@STATE_OPTION
@JSON_OPTION
def promote(rollout_id: str, inventory: str, state_dir: str | None, as_json: bool) -> None:
    """Start the next wave of a rollout started with --confirm."""
    _continue(rollout_id, inventory, state_dir, as_json, ("waiting",), "promote")


def _back(rollout_id: str, inventory: str, state_dir: str | None, as_json: bool,
          event: str) -> None:  # fmt: skip
    journal = _journal(inventory, state_dir)
    found = _load_rollout(journal, rollout_id, inventory)
    if found.status in FINAL:
        _refuse(f"rollout {found.id} is {found.status} already")
    with _driving(journal, found.container):
        found = _load_rollout(journal, rollout_id)
        reason = "rolled back by a person" if event == "rollback" else "aborted by a person"
        code = controller_for(journal, found, _say).rollback(reason, event)
    _finish(journal, found, code, as_json)


@rollout.command("rollback")
@click.argument("rollout_id")
@INVENTORY_OPTION
@STATE_OPTION
@JSON_OPTION
def rollback(rollout_id: str, inventory: str, state_dir: str | None, as_json: bool) -> None:
    """Put every host the rollout moved back on its previous image; the rollout ends aborted."""
    _back(rollout_id, inventory, state_dir, as_json, "rollback")


@rollout.command("abort")
@click.argument("rollout_id")
@INVENTORY_OPTION
@STATE_OPTION
@JSON_OPTION
def abort(rollout_id: str, inventory: str, state_dir: str | None, as_json: bool) -> None:
    """Stop a rollout for good: as rollback, recorded as aborted by a person."""
    _back(rollout_id, inventory, state_dir, as_json, "abort")


@rollout.command("status")
@click.argument("rollout_id", required=False)
@INVENTORY_OPTION
@STATE_OPTION
@JSON_OPTION
def status(rollout_id: str | None, inventory: str, state_dir: str | None, as_json: bool) -> None:
    """Where a rollout stands, host by host (the latest one without ROLLOUT_ID)."""
    journal = _journal(inventory, state_dir)
    if rollout_id is None:
        every = journal.all()
        if not every:
            click.echo(f"no rollout recorded in {journal.state_dir}")
            return
        rollout_id = every[-1].id
    found = _load_rollout(journal, rollout_id, inventory)
    data = summary(journal, found, 0)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    what = (f"{found.to_ref}" if found.options.get("kind") == "driver"
            else f"{found.container} -> {found.to_ref} ({found.to_image})")  # fmt: skip
    click.echo(f"{found.id}: {what}")
    click.echo(f"  wave {min(found.wave + 1, len(found.waves))}/{len(found.waves)}, by "
               f"{found.owner}, since {found.created}")  # fmt: skip
    click.echo("\n".join(summary_lines(data)))


@rollout.command("history")
@click.argument("rollout_id", required=False)
@INVENTORY_OPTION
@STATE_OPTION
def rollout_history(rollout_id: str | None, inventory: str, state_dir: str | None) -> None:
    """The audit log: every rollout event (who, when, from/to, wave, gates, decisions)."""
    journal = _journal(inventory, state_dir)
    lines = journal.audit_lines(rollout_id)
    if not lines:
        click.echo(f"no rollout events in {journal.audit_path}")
        return
    for line in lines:
        skip = ("at", "who", "rollout", "event", "container", "from", "to")
        extra = {k: v for k, v in line.items() if k not in skip}
        click.echo(f"{line['at']} {line['rollout']} {line['event']:<14} {line['who']}  "
                   + json.dumps(extra, sort_keys=True)[:400])  # fmt: skip
