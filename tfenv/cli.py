"""The ``tfenv`` command line. Thin: every command calls library functions."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import click

from tfenv import __version__
from tfenv.model.problems import format_problems


def _fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfenv")
def main() -> None:
    """tfenv: declarative provisioning of GPU hosts running TensorFlow containers.

    Deploy with pyinfra itself: pyinfra inventories/gpu.py deploys/tf_node.py
    """


@main.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="HOST_OR_GROUP",
    help="Only check these hosts or groups (repeatable).",
)
def validate(inventory: str, limits: tuple[str, ...]) -> None:
    """Check INVENTORY and its group_data without connecting to any host.

    Prints one line per problem (host, field, what was expected) and exits 1
    if there is any; run it from the directory you run pyinfra from.
    """
    from tfenv.model.inventory import load_inventory, validate_hosts

    base = Path(os.getcwd())
    try:
        inv = load_inventory(inventory, base)
    except FileNotFoundError as exc:
        _fail(f"{exc}; pass the path of a pyinfra inventory file such as inventories/gpu.py")
    except Exception as exc:  # the inventory or a group_data file raised while executing
        _fail(f"could not load {inventory}: {type(exc).__name__}: {exc}")
    hosts = _limited(inv, limits)
    specs, problems = validate_hosts(hosts, base)
    if problems:
        click.echo(format_problems(problems), err=True)
        bad = len({p.host for p in problems})
        _fail(
            f"{inventory}: {len(problems)} problem(s) on {bad} of {len(hosts)} host(s); "
            "nothing was contacted. Fix the fields above and run tfenv validate again."
        )
    groups = Counter(g for host in hosts for g in host.groups if g not in ("all",))
    summary = ", ".join(f"{name}: {count}" for name, count in sorted(groups.items()))
    containers = sum(len(spec.containers) for spec in specs.values())
    click.echo(
        f"{inventory}: {len(hosts)} host(s) valid ({summary}); "
        f"{containers} container(s) declared. Nothing was contacted."
    )


def _limited(inventory, limits: tuple[str, ...]) -> list:
    hosts = list(inventory)
    if not limits:
        return hosts
    chosen = []
    for host in hosts:
        if host.name in limits or any(g in limits for g in host.groups):
            chosen.append(host)
    if not chosen:
        _fail(f"--limit {' '.join(limits)} matches no host or group of the inventory")
    return chosen


@main.group()
def secrets() -> None:
    """Manage the secret files an inventory refers to (values are never printed)."""


@secrets.command("init")
@click.argument("inventory", type=click.Path(dir_okay=False, exists=True))
def secrets_init(inventory: str) -> None:
    """Create missing secret files declared with ``generate: True`` (mode 0600,
    random token). Existing files and environment-variable secrets are left alone."""
    from tfenv.model.inventory import load_inventory
    from tfenv.model.secrets import SecretRef, generate_secret_file

    base = Path(os.getcwd())
    written = 0
    seen: set[str] = set()
    for host in load_inventory(inventory, base):
        raw = host.data.dict().get("secrets") or {}
        if not isinstance(raw, dict):
            continue
        for name, ref_data in raw.items():
            try:
                ref = SecretRef.model_validate(ref_data)
            except Exception:
                continue  # tfenv validate reports it
            if ref.file is None or ref.file in seen:
                continue
            seen.add(ref.file)
            path = generate_secret_file(ref, base)
            if path:
                written += 1
                click.echo(f"created {path} for secret {name!r} (mode 0600)")
    click.echo(f"{written} secret file(s) created; existing ones were left as they were.")


if __name__ == "__main__":
    main()
