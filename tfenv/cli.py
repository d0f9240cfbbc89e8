"""The ``tfenv`` command line. Thin: every command calls library functions."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import click

from tfenv import __version__
from tfenv.errors import TfenvError
from tfenv.model.problems import format_problems
from tfenv.reconcile import history


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
    from tfenv.images.lock import dump_lock, read_lock
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
            # What rollouts promoted stays: only a rollout changes it.
            temporary.write_text(dump_lock(resolved, read_lock(path)[0].promoted))
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
@click.option(
    "--dev-image",
    type=click.Choice(["tf", "small"]),
    default="tf",
    show_default=True,
    help="tf: the lab TF releases (real TensorFlow, about 1.8 GB). small: a small dev image "
    "with sshd and a SIMULATED TensorFlow, for a scale lab of many hosts (benchmarks).",
)
@lab_options
def lab_up(hosts: int, images: bool, gpus: int, dev_image: str, name: str, directory: str) -> None:
    """Build what is missing and start HOSTS lab hosts, the lab registry and the
    lab's simulators (NVIDIA apt repositories, NFS server). Idempotent."""
    from tfenv.lab import fleet

    state = _lab_call(fleet.up, _lab(name, directory), hosts, images, gpus, dev_image)
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


STATE_DIR_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="History and reports (default: .tfenv/ by the inventory; TFENV_STATE_DIR).",
)


class _RunByDefault(click.Group):
    """``tfenv reconcile INVENTORY`` runs a check; ``history`` and ``merge`` are
    subcommands. Usage errors exit 3 (bad input), never 2 (which means drift)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.show()
            sys.exit(3)


@main.group(cls=_RunByDefault)
def reconcile() -> None:
    """Check a fleet against its declared state: tfenv reconcile INVENTORY [OPTIONS].

    \b
    Exit codes (like terraform plan -detailed-exitcode):
      0  every targeted host was checked and matches its declared state
      2  drift found, every targeted host checked
      1  at least one host could not be checked (whatever else was found)
      3  bad input (inventory, data or options); no host was contacted
    """


@reconcile.command("run")
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="HOST_OR_GROUP",
    help="Only these hosts or groups (repeatable).",
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Deploy tf_node where drift is safe to fix unattended; check again.",
)
@click.option(
    "--batch",
    default=None,
    metavar="N|P%",
    help="Hosts per --apply batch: N or P% (default 10%, at least 1).",
)
@click.option(
    "--force-busy",
    is_flag=True,
    help="--apply also replaces containers in use (their users get a notice).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where report.json, report.html, tfenv.prom go (default: state dir).",
)
@STATE_DIR_OPTION
@click.option(
    "--shard",
    default=None,
    metavar="K/N",
    help="Only the hosts of shard K of N (a stable hash of the host name).",
)
@click.option(
    "--deploy",
    default="deploys/tf_node.py",
    show_default=True,
    help="The deploy whose dry run defines the declared state.",
)
@click.option(
    "--deep", is_flag=True, help="Also run each container's health probe (a TF op inside it)."
)
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout.")
@click.option("--quiet", is_flag=True, help="No progress and no summary (for timers).")
def reconcile_run(
    inventory: str,
    limits: tuple[str, ...],
    apply_: bool,
    batch: str | None,
    force_busy: bool,
    report_dir: str | None,
    state_dir: str | None,
    shard: str | None,
    deploy: str,
    deep: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Check INVENTORY's hosts (one pyinfra --dry of the tf_node deploy), per field."""
    # pyinfra starts first, gated: it loads while this process loads and validates
    # the same inventory, and connects only once told "go" (never on bad input).
    from tfenv.reconcile import check
    from tfenv.reconcile.report import EXIT_BAD_INPUT

    base = Path(os.getcwd())
    started = None

    def bad_input(message: str | None = None) -> None:
        if started is not None:
            started.finish([])  # stopped before it connected to any host
        if message:
            click.secho(f"{message}\nNo host was contacted (exit 3).", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)

    try:
        shard_k_n = check.parse_shard(shard) if shard else None
        for path, what in ((deploy, "--deploy"), (inventory, "INVENTORY")):
            if not Path(path).is_file():
                raise ValueError(f"{what} {path}: no such file here ({base}); run from the "
                                 "directory you run pyinfra from")  # fmt: skip
        check.batch_size(batch, 1)
        if force_busy and not apply_:
            raise ValueError("--force-busy goes with --apply (it says what --apply may replace)")
    except ValueError as exc:
        bad_input(str(exc))
    state = history.state_dir_for(Path(inventory), state_dir)
    lock = _one_run_at_a_time(state, shard)
    started = check.start_pyinfra(inventory, deploy, limits, dry=True, collect=True, deep=deep,
                                  data=check.busy_data(force_busy),
                                  shard=shard, gated=True)  # fmt: skip

    from tfenv.model.inventory import validate_hosts
    from tfenv.reconcile.run import LOG_NAME, Run, reconcile, render_all, summary, write_reports

    try:
        hosts = _matching(_load(inventory, base), limits)
    except SystemExit:  # _load said why
        bad_input()
    specs, problems = validate_hosts(hosts, base)
    if problems:
        click.echo(format_problems(problems), err=True)
        bad_input(f"{inventory}: {len(problems)} problem(s) in the declared data")
    names = sorted(h.name for h in hosts)
    if shard_k_n:
        names = [n for n in names if check.shard_of(n, shard_k_n[1]) == shard_k_n[0]]
    started.release(go=bool(names))
    say = (lambda _: None) if quiet else (lambda text: click.echo(f"reconcile: {text}", err=True))
    say(f"checking {len(names)} host(s){f' (shard {shard})' if shard else ''}")
    per_batch = check.batch_size(batch, len(names))
    report = reconcile(
        Run(inventory, deploy, apply_, per_batch, force_busy, shard, deep, state / LOG_NAME),
        names,
        say,
        None if quiet else _progress_line(),
        checked=lambda before: _record(state, before),
        first=started,
    )
    report = _record(state, report)
    texts = render_all(report, _secret_values(specs.values(), base))
    write_reports(Path(report_dir) if report_dir else state, texts)
    if as_json:
        click.echo(texts["report.json"], nl=False)
    elif not quiet:
        click.echo(summary(report))
    lock.close()
    sys.exit(report.exit_code)


def _matching(inventory, limits: tuple[str, ...]) -> list:  # type: ignore[no-untyped-def]
    """The hosts ``--limit`` picks, as pyinfra picks them: a group's hosts, or the
    host names matching a glob; a pattern that matches nothing is an error."""
    from fnmatch import fnmatchcase

    from pyinfra.api.exceptions import NoGroupError

    if not limits:
        return list(inventory)
    chosen: dict[str, object] = {}
    for pattern in limits:
        try:
            found = list(inventory.get_group(pattern))
        except NoGroupError:
            found = [h for h in inventory if fnmatchcase(h.name, pattern)]
        if not found:
            _fail(f"--limit {pattern} matches no host or group of the inventory")
        chosen.update((h.name, h) for h in found)
    return list(chosen.values())


def _record(state: Path, report):  # type: ignore[no-untyped-def]
    """The report with first-seen times from the history it was appended to; a history
    that cannot be written is said, and the reports are still written."""
    try:
        return history.record_run(state, report)
    except TfenvError as exc:
        click.secho(f"tfenv: history not recorded: {exc}", fg="red", err=True)
        return report


def _one_run_at_a_time(state: Path, shard: str | None):  # type: ignore[no-untyped-def]
    """An exclusive lock per state directory and shard, held for the whole run: a
    timer's run and a person's never overlap (shards of one run may)."""
    from tfenv.reconcile.files import hold_exclusive

    name = f"reconcile-shard-{shard.replace('/', '-of-')}.lock" if shard else "reconcile.lock"
    handle, holder = hold_exclusive(state / name)  # held until the run ends
    if handle is None:
        _fail(
            f"another tfenv reconcile ({holder or 'another process'}) is running on {state}; "
            "this run checked nothing (exit 1). Wait for it, or pass another --state-dir."
        )
    return handle


def _progress_line():  # type: ignore[no-untyped-def]
    """A live line on a terminal; a line per change otherwise (logs, CI)."""
    started = time.monotonic()
    live = sys.stderr.isatty()

    def show(done: int, total: int, drifted: int) -> None:
        text = (f"reconcile: {done}/{total} host(s) done, {drifted} with drift or "
                f"not checked, {time.monotonic() - started:.0f} s")  # fmt: skip
        click.echo(f"\r{text}\033[K" if live else text, err=True, nl=not live)
        if live and done == total:
            click.echo(err=True)

    return show


def _secret_values(specs, base: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Every declared secret's value the reports must never contain."""
    from tfenv.model.secrets import SecretUnavailable, read_secret

    values = []
    for spec in specs:
        for name, declared in spec.secrets.items():
            try:
                values.append(read_secret(name, declared, base).reveal())
            except SecretUnavailable:
                continue
    return values


@reconcile.command("history")
@click.argument("host", required=False)
@click.option(
    "--inventory",
    default="inventories/gpu.py",
    show_default=True,
    help="The inventory whose .tfenv/ holds the history.",
)
@STATE_DIR_OPTION
def reconcile_history(host: str | None, inventory: str, state_dir: str | None) -> None:
    """Drift per host and field: first seen, last seen, fixed at."""
    state = history.state_dir_for(Path(inventory), state_dir, create=False)
    try:
        click.echo(history.format_history(history.host_history(state, host)))
    except TfenvError as exc:
        _fail(str(exc))


@reconcile.command("merge")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Where the merged report.json, report.html and tfenv.prom go.",
)
def reconcile_merge(reports: tuple[str, ...], report_dir: str) -> None:
    """Join shard reports (report.json files) into one JSON/HTML/prom; exit as the whole run."""
    import json

    from tfenv.reconcile.report import EXIT_BAD_INPUT, Report, merge
    from tfenv.reconcile.run import render_all, write_reports

    try:
        loaded = [Report.from_json(json.loads(Path(p).read_text())) for p in reports]
        merged = merge(loaded)
    except (ValueError, KeyError, TypeError) as exc:
        click.secho(f"tfenv reconcile merge: {exc}", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    write_reports(Path(report_dir), render_all(merged))
    hosts, code = len(merged.hosts), merged.exit_code
    click.echo(f"merged {len(loaded)} report(s): {hosts} host(s), exit {code}")
    sys.exit(merged.exit_code)


INVENTORY_OPTION = click.option(
    "-i",
    "--inventory",
    default=lambda: os.environ.get("TFENV_INVENTORY", "inventories/gpu.py"),
    show_default="$TFENV_INVENTORY or inventories/gpu.py",
    help="The pyinfra inventory the host is in.",
)


@main.group()
def hotfix() -> None:
    """Work on a production bug beside a researcher's experiments, safely.

    start: a git worktree of their repository at the production ref (branch
    hotfix/REF) and a sibling container CONTAINER-hotfix running the production
    image, with the same user, keys, secrets, home and checkpoints. finish:
    removes both and keeps the branch. Their own working tree, index,
    untracked files and stash are never touched.
    """


def _hotfix(request):  # type: ignore[no-untyped-def]
    """(the result line, the inventory, loaded once)."""
    from tfenv import hotfix as hf

    base = Path(os.getcwd())
    inventory = _load(request.inventory, base)  # a bad inventory: one line, no traceback
    problems = hf.check_request(request, base, inventory)
    if problems:
        click.echo("\n".join(problems), err=True)
        _fail("tfenv hotfix: fix the above; nothing was changed.")
    started = time.monotonic()
    try:
        result = hf.run(request, lambda line: click.echo(
            f"[{time.monotonic() - started:5.1f}s] {line}", err=True))  # fmt: skip
        return result, inventory
    except hf.HotfixError as exc:
        _fail(str(exc))
        raise


@hotfix.command("start")
@click.argument("host")
@click.argument("container")
@click.option("--ref", required=True, help="The production branch, tag or commit to fix.")
@click.option("--image", default="", help="name:tag to run (pinned in the lock); default: "
              "the container's declared image, as the lock pins it.")  # fmt: skip
@click.option("--repo", default="", help="The repository, relative to the home (default: "
              "the only one at the home's top level).")  # fmt: skip
@INVENTORY_OPTION
def hotfix_start(host: str, container: str, ref: str, image: str, repo: str,
                 inventory: str) -> None:  # fmt: skip
    """Start a hotfix of CONTAINER on HOST (again: says it is already started)."""
    from tfenv import hotfix as hf

    request = hf.Request(inventory, host, container, "start", ref=ref, image=image, repo=repo)
    result, inv = _hotfix(request)
    address = next((h.data.get("ssh_hostname") or h.name for h in inv if h.name == host), host)
    click.echo(hf.started_text(request, result, address))


@hotfix.command("finish")
@click.argument("host")
@click.argument("container")
@click.option("--discard", is_flag=True, help="Drop uncommitted files in the hotfix worktree "
              "(and close sessions in the sibling).")  # fmt: skip
@click.option("--repo", default="", help="The repository, when the sibling is already gone.")
@INVENTORY_OPTION
def hotfix_finish(host: str, container: str, discard: bool, repo: str, inventory: str) -> None:
    """Remove CONTAINER's hotfix sibling and worktree on HOST; the branch stays.
    Refused while the worktree has uncommitted files (unless --discard)."""
    from tfenv import hotfix as hf

    request = hf.Request(inventory, host, container, "finish", repo=repo, discard=discard)
    click.echo(hf.finished_text(request, _hotfix(request)[0]))


def _add_groups() -> None:
    from tfenv.images.cli import image
    from tfenv.rollout.cli import rollout

    main.add_command(rollout)
    main.add_command(image)


_add_groups()
