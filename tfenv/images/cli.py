"""``tfenv image build|lock-deps``: team images from specs under ``images/``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from tfenv.model.problems import format_problems

EXIT_BAD_INPUT = 1
EXIT_FAILED = 1
EXIT_REFUSED = 2  # a gate refused the push


@click.group()
def image() -> None:
    """Build team images from specs (images/*.yaml): pinned, gated, pushed, locked."""


def _plan(spec: str, lock_deps: bool):  # type: ignore[no-untyped-def]
    from tfenv.images.build import plan_build

    plan, problems = plan_build(Path(spec), Path(os.getcwd()), lock_deps=lock_deps)
    if problems:
        click.echo(format_problems(problems), err=True)
        click.secho(f"{spec}: fix the above; nothing was built.", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    return plan


def _say(started: float):  # type: ignore[no-untyped-def]
    def say(line: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f}s] {line}", err=True)

    return say


@image.command("build")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--skip-scan",
    is_flag=True,
    help="Push without the vulnerability scan; the image's tfenv.image.scan label says so.",
)
def image_build(spec: str, skip_scan: bool) -> None:
    """Build SPEC's image, check it for secrets and vulnerabilities, push it and
    write its digest into the fleet's lock.

    Exit 0: pushed and locked, or already so. 1: bad input or a failed step
    (nothing pushed). 2: a gate refused the push (nothing pushed).
    """
    from tfenv.images.build import BuildError, GateRefused, build

    plan = _plan(spec, lock_deps=False)
    try:
        built = build(plan, _say(time.monotonic()), skip_scan=skip_scan)
    except GateRefused as exc:
        click.secho(str(exc), fg="red", err=True)
        sys.exit(EXIT_REFUSED)
    except BuildError as exc:
        click.secho(f"{exc}\nNothing was pushed; the lock is unchanged.", fg="red", err=True)
        sys.exit(EXIT_FAILED)
    if built.digest is None:
        click.echo(built.note)
        return
    click.echo(f"Built, pushed and locked {built.reference}")
    click.echo(f"  digest   {built.digest}")
    click.echo(f"  lock     {built.lock_path}")
    click.echo(f"  scan     {built.scan}")
    click.echo(f"  secrets  {built.secrets_checked} value(s) searched in every layer: none found")
    click.echo(
        f'Run it: a container\'s image: "{built.reference}" in the group data, then the deploy.'
    )


@image.command("lock-deps")
@click.argument("spec", type=click.Path(dir_okay=False))
def image_lock_deps(spec: str) -> None:
    """Resolve SPEC's pip packages inside its base image and write its
    pip_requirements file: every package pip installs, exact version and hash."""
    from tfenv.images.build import BuildError, lock_deps

    plan = _plan(spec, lock_deps=True)
    try:
        path = lock_deps(plan, _say(time.monotonic()))
    except BuildError as exc:
        click.secho(f"{exc}\nThe requirements file is unchanged.", fg="red", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"{path}: written; commit it with {spec}.")
