"""The ``tfenv`` command line. Thin: every command calls library functions."""

from __future__ import annotations

import os
import sys
import traceback
from collections import Counter
from pathlib import Path

import click

from tfenv import __version__
from tfenv.errors import TfenvError
from tfenv.model.problems import format_problems


def _fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


def _load(inventory: str, base: Path):
    """The inventory, or a one-line error: a file of the user's that raised is
    named with its own line and error (never a traceback from tfenv)."""
    from tfenv.model.inventory import load_inventory

    try:
        return load_inventory(inventory, base)
    except FileNotFoundError as exc:
        _fail(f"{exc}; pass the path of a pyinfra inventory file such as inventories/gpu.py")
    except SystemExit as exc:  # an inventory that exits (the lab's, when no lab is up)
        _fail(f"could not load {inventory}: {exc}")
    except Exception as exc:  # the user's inventory or group_data file raised
        # pyinfra wraps it (UnexpectedExternalError: .exception, .filename)
        error = getattr(exc, "exception", exc)
        tb = getattr(error, "_traceback", None) or error.__traceback__
        frames = [f for f in traceback.extract_tb(tb)
                  if not f.filename.startswith(str(Path(__file__).parent))
                  and "site-packages" not in f.filename]  # fmt: skip
        where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
        _fail(f"could not load {inventory}{where}: {type(error).__name__}: {error}")


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
    from tfenv.model.inventory import validate_hosts

    base = Path(os.getcwd())
    inv = _load(inventory, base)
    hosts = _limited(inv, limits)
    specs, problems = validate_hosts(hosts, base)
    if problems:
        click.echo(format_problems(problems), err=True)
        bad = len({p.host for p in problems})
        _fail(
            f"{inventory}: {len(problems)} problem(s) on {bad} of {len(hosts)} host(s); "
            "nothing was contacted. Fix the fields above and run tfenv validate again."
        )
    from tfenv.model.load import warning_text

    cautions = warning_text(specs.values(), "warning: ")
    if cautions:
        click.echo(cautions, err=True)
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


@main.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a tag moved or is missing.")
def lock(inventory: str, check: bool) -> None:
    """Resolve every pinned image tag of INVENTORY against its registry and
    (re)write the lock file(s) with their digests.

    Images: the declared containers' and gpu_check_image, plus every entry
    already in the lock. Registry logins and CAs come from the declared data.
    """
    from tfenv.images.lock import dump_lock
    from tfenv.images.locking import lock_changes, plan_locks, resolve_plan

    base = Path(os.getcwd())
    hosts = list(_load(inventory, base))
    plans, problems = plan_locks(hosts, base)
    if problems:
        click.echo("\n".join(problems), err=True)
        _fail(f"{inventory}: fix the data above first (tfenv validate shows every field)")
    moved = 0
    for path, plan in sorted(plans.items()):
        click.echo(f"Resolving {len(plan.images)} image(s) for {path} ...", err=True)
        resolved, failures = resolve_plan(plan, lambda line: click.echo(line, err=True))
        if failures:
            click.echo("\n".join(failures), err=True)
            _fail(f"{path}: {len(failures)} image(s) could not be resolved; the lock is unchanged")
        changes = lock_changes(path, resolved)
        moved += len(changes)
        for line in changes:
            click.echo(f"  {line}")
        if check:
            continue
        if changes or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(path.suffix + ".tmp")
            temporary.write_text(dump_lock(resolved))
            temporary.replace(path)  # never a half-written lock
            click.echo(f"{path}: written ({len(changes)} change(s))")
        else:
            click.echo(f"{path}: up to date")
    if check and moved:
        _fail(f"{moved} tag(s) differ from the lock; run: tfenv lock {inventory}")
    if check:
        click.echo("Every tag matches the lock.")


@main.group()
def secrets() -> None:
    """Manage the secret files an inventory refers to (values are never printed)."""


@secrets.command("init")
@click.argument("inventory", type=click.Path(dir_okay=False, exists=True))
def secrets_init(inventory: str) -> None:
    """Create missing secret files declared with ``generate: True`` (mode 0600,
    random token). Existing files and environment-variable secrets are left alone."""
    from pydantic import ValidationError

    from tfenv.model.secrets import SecretRef, generate_secret_file

    base = Path(os.getcwd())
    written = 0
    seen: set[str] = set()
    for host in _load(inventory, base):
        raw = host.data.dict().get("secrets") or {}
        if not isinstance(raw, dict):
            continue
        for name, ref_data in raw.items():
            try:
                ref = SecretRef.model_validate(ref_data)
            except ValidationError:
                continue  # tfenv validate reports it
            if ref.file is None or ref.file in seen:
                continue
            seen.add(ref.file)
            path = generate_secret_file(ref, base)
            if path:
                written += 1
                click.echo(f"created {path} for secret {name!r} (mode 0600)")
    click.echo(f"{written} secret file(s) created; existing ones were left as they were.")


def _lab(name: str, directory: str):
    from tfenv.lab.fleet import Lab

    return Lab(name=name, directory=Path(directory))


_lab_options = [
    click.option(
        "--name",
        default=lambda: os.environ.get("TFENV_LAB_NAME", "tfenv-lab"),
        show_default="tfenv-lab",
        help="Prefix of every container and network.",
    ),
    click.option(
        "--dir",
        "directory",
        default=lambda: os.environ.get("TFENV_LAB_DIR", ".lab"),
        show_default=".lab",
        help="Where keys, known_hosts and state live.",
    ),
]


def lab_options(func):
    for option in reversed(_lab_options):
        func = option(func)
    return func


@main.group()
def lab() -> None:
    """A local fleet of host-like containers (systemd + sshd) over real SSH.

    Deploy to it like to real hosts: pyinfra inventories/lab.py deploys/tf_node.py
    """


def _lab_call(func, *args):
    try:
        return func(*args)
    except TfenvError as exc:
        _fail(f"tfenv lab: {exc}")


@lab.command("up")
@click.option("--hosts", default=3, show_default=True, help="Number of lab hosts.")
@click.option(
    "--images/--no-images",
    default=True,
    show_default=True,
    help="Build and push the lab TF images (real TensorFlow; minutes the first time).",
)
@click.option(
    "--gpus",
    default=2,
    show_default=True,
    help="SIMULATED GPUs per lab host (0 to 8; the lab has no real ones).",
)
@lab_options
def lab_up(hosts: int, images: bool, gpus: int, name: str, directory: str) -> None:
    """Build what is missing and start HOSTS lab hosts, the lab registry and the
    lab's simulators (NVIDIA apt repositories, NFS server). Idempotent."""
    from tfenv.lab import fleet

    state = _lab_call(fleet.up, _lab(name, directory), hosts, images, gpus)
    for host in state.hosts:
        click.echo(
            f"{host.name}\tssh -i {state.key} -o UserKnownHostsFile={state.known_hosts} "
            f"-p {host.port} {state.user}@127.0.0.1"
        )
    _echo_registry(state)


def _echo_registry(state) -> None:
    from tfenv.images.lock import read_lock

    registry = state.registry
    click.echo(
        f"registry\t{registry['host']} (on this machine: {registry['local']}), user "
        f"{registry['username']}, password in {registry['password_file']}, CA {registry['ca_file']}"
    )
    if state.lock:
        lock, _ = read_lock(Path(state.lock))
        for reference, image in sorted(lock.images.items()):
            click.echo(f"image\t{reference}\t{image.digest}")


@lab.command("status")
@lab_options
def lab_status(name: str, directory: str) -> None:
    """Each lab host: container state, SSH port, whether SSH+sudo answers, memory."""
    from tfenv.lab import fleet

    the_lab = _lab(name, directory)
    rows = _lab_call(fleet.status, the_lab)
    if not rows:
        click.echo(f"Lab {name!r} is not up. Start it: tfenv lab up")
        return
    for row in rows:
        memory = f"{row['memory'] / 2**20:.0f} MiB" if row["memory"] is not None else "-"
        answer = "ok" if row["answers"] else "FAILING"
        click.echo(
            f"{row['host']}\t{row['state']}\t127.0.0.1:{row['port']}\t{row['kind']} "
            f"{answer}\t{memory}"
        )
    state = fleet.LabState.read(the_lab.state_file)
    _echo_registry(state)
    if not all(row["answers"] for row in rows):
        _fail("Some lab containers do not answer: run tfenv lab up to repair them.")


@lab.command("access")
@click.option(
    "--container-port",
    default=2222,
    show_default=True,
    help="The dev container's SSH port on the host.",
)
@click.option("--jupyter-port", default=8888, show_default=True, help="Jupyter's port on the host.")
@lab_options
def lab_access(container_port: int, jupyter_port: int, name: str, directory: str) -> None:
    """How to reach each lab host's dev container: SSH (through the lab host) and Jupyter.

    Lab hosts publish only their own SSH on 127.0.0.1; the dev container's
    ports live on the lab host, so both go through it. The Jupyter token is
    read from its file by your shell; it is never printed here.
    """
    from tfenv.lab import fleet

    the_lab = _lab(name, directory)
    if not the_lab.state_file.exists():
        _fail(f"Lab {name!r} is not up. Start it: tfenv lab up")
    state = fleet.LabState.read(the_lab.state_file)
    token = state.secrets.get("jupyter_token_dev", "")
    for number, host in enumerate(state.hosts):
        hop = (
            f"ssh -i {state.key} -o UserKnownHostsFile={state.known_hosts} -p {host.port} "
            f"{state.user}@127.0.0.1"
        )
        local = jupyter_port + 10 + number
        click.echo(f"{host.name}:")
        click.echo(
            f"  ssh:     ssh -i {state.key} -o ProxyCommand='{hop} -W %h:%p' "
            f"-p {container_port} researcher@127.0.0.1"
        )
        click.echo(f"  jupyter: {hop} -N -L {local}:127.0.0.1:{jupyter_port} &")
        click.echo(f'           then open http://127.0.0.1:{local}/lab?token="$(cat {token})"')


@lab.command("down")
@lab_options
def lab_down(name: str, directory: str) -> None:
    """Remove every container, network and volume the lab made (nothing else)."""
    from tfenv.lab import fleet

    _lab_call(fleet.down, _lab(name, directory))


if __name__ == "__main__":
    main()
