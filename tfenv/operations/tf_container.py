"""tfenv's own container operation: declared spec in, drift detected field by field.

pyinfra's ``docker.container`` never compares a running container with its
spec. This one does (see :mod:`tfenv.containers.drift`), recreates only on a
real difference, and pulls the new image *before* touching the old
container: a failed pull leaves it running. A new container that fails to
start gives way to the previous one again.

A researcher's work is never lost to a replacement: the home directory and
checkpoints are host (or NFS) directories that outlive the container, and a
container in use (SSH sessions, busy Jupyter kernels, GPU processes: see
:mod:`tfenv.containers.busy`) is replaced only as its ``replace`` policy says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pyinfra import host, logger
from pyinfra.api import QuoteString, StringCommand, operation

from tfenv import layout
from tfenv.containers.busy import BUSY_FUNCTIONS, in_use
from tfenv.containers.desired import DesiredContainer, account_files, authorized_keys_path
from tfenv.containers.docker_up import wait_for_docker
from tfenv.containers.drift import Drift, drift
from tfenv.containers.options import run_arguments
from tfenv.drift import record
from tfenv.facts.tf_node import ObservedContainer, TfNodeState, tf_node
from tfenv.layout import (
    PREVIOUS_SUFFIX,
    ROLLOUT_FROM_LABEL,
    ROLLOUT_ID_LABEL,
    ROLLOUT_LABELS,
    ROLLOUT_TO_LABEL,
    secret_path,
)
from tfenv.model.secrets import SecretValue
from tfenv.model.spec import ReplacePolicy
from tfenv.operations.failure import fail_host
from tfenv.operations.image import pull_command
from tfenv.operations.sealed_file import (
    remove_sealed_file,
    sealed_file_difference,
    write_sealed_file,
)

LOCK_WAIT = 900  # seconds a run waits for another one's replacement of the same container
NOTICE_SECONDS = 10  # between the notice on users' terminals and the replacement
OVERRIDE = "--data force_busy=true"
# host name -> container -> why its replacement is pending (reported, then the host fails)
PENDING: dict[str, dict[str, list[str]]] = {}


def _prepare(desired: DesiredContainer) -> list[StringCommand]:
    owner = ["-o", str(desired.uid), "-g", str(desired.gid)]
    host_keys = QuoteString(layout.host_keys_dir(desired.name))
    # sshd runs as the user: its host keys are theirs (kept from earlier containers).
    commands = [
        StringCommand("install", "-d", "-m", "0700", *owner, host_keys),
        StringCommand("chown", "-R", f"{desired.uid}:{desired.gid}", host_keys),
    ]
    for mount_point in desired.needs_mounted:
        message = (
            f"tfenv: {mount_point} is not mounted: {desired.name} is not started, so nothing "
            "meant for the export (home, checkpoints) is written to the local disk. Check the "
            "NFS mount (systemctl status, the server), then run the deploy again."
        )
        commands.append(
            StringCommand("mountpoint", "-q", QuoteString(mount_point), "||",
                          "{", "echo", QuoteString(message), ">&2;", "exit", "1;", "}"),
        )  # fmt: skip
    home = desired.home_source
    parent = home.rsplit("/", 1)[0]
    commands += [
        StringCommand("install", "-d", "-m", "0755", QuoteString(parent)),
        StringCommand("install", "-d", "-m", "0750", *owner, QuoteString(home)),
    ]
    if desired.checkpoint_source:
        commands.append(StringCommand("install", "-d", *owner,
                                      QuoteString(desired.checkpoint_source)))  # fmt: skip
    return commands


def busy_guard(
    name: str,
    replace: ReplacePolicy,
    policy: str,
    doing: str = "replaced",
    undo: str = "",
    gpu: bool = True,
) -> StringCommand:
    """Right before ``name`` is replaced (or its host rebooted), on the host: is it
    in use now? ``when-idle`` stops, ``wait`` polls until idle or the timeout, ``now``
    tells the users' terminals and goes on. ``doing``: what is about to happen
    (``replaced``; ``rebooted``: the host). ``gpu=False``: SSH sessions and Jupyter
    kernels only (between a driver install and its reboot nvidia-smi cannot answer)."""
    quoted = QuoteString(name)
    idle = str(replace.idle_minutes)
    apps = "tfenv_gpu_apps;" if gpu else "tfenv_apps=;"
    check = StringCommand(apps, "r=$(tfenv_busy", quoted, idle, ");")
    held = "not replaced" if doing == "replaced" else "the host is not rebooted"
    anyway = f"{OVERRIDE} {'replaces it' if doing == 'replaced' else 'reboots it'} anyway"
    if policy == "when-idle":
        busy = QuoteString(f"tfenv: {name} came into use; {held} ({anyway}){undo}:")
        act = StringCommand('[ -z "$r" ] ||', "{", "echo", busy, '"$r"', ">&2;", "exit", "1;", "}")
    elif policy == "wait":
        timeout = replace.timeout
        late = QuoteString(f"tfenv: {name} is still in use after {timeout} s; {held} (run "
                           f"again later, or {OVERRIDE}){undo}:")  # fmt: skip
        act = StringCommand(
            f"end=$(( $(date +%s) + {timeout} ));", 'while [ -n "$r" ]; do',
            '[ "$(date +%s)" -lt "$end" ] ||',
            "{", "echo", late, '"$r"', ">&2;", "exit", "1;", "};",
            "sleep", "3;", check, "done",
        )  # fmt: skip
    else:
        what = (f"this container ({name}) is replaced" if doing == "replaced"
                else f"this host is rebooted (NVIDIA driver) and {name} restarts")  # fmt: skip
        notice = (
            f"*** tfenv: {what} in {NOTICE_SECONDS} seconds by a deploy. Save your work now. "
            "Your home directory and checkpoints are kept; reconnect in a minute. ***"
        )
        tell = (
            'for t in /dev/pts/[0-9]*; do [ -w "$t" ] && printf "\\r\\n%s\\r\\n" "$1" > "$t"; '
            "done; true"
        )
        act = StringCommand(
            '[ -z "$r" ] ||', "{", "docker", "exec", quoted, "sh", "-c", QuoteString(tell), "sh",
            QuoteString(notice), ";", "sleep", str(NOTICE_SECONDS), ";", "}",
        )  # fmt: skip
    return StringCommand(BUSY_FUNCTIONS, check, act)


def _replace(desired: DesiredContainer) -> StringCommand:
    name, old = QuoteString(desired.name), QuoteString(desired.name + PREVIOUS_SUFFIX)
    restore = QuoteString(
        f"tfenv: the new {desired.name} did not start; the previous container runs again"
    )
    return StringCommand(
        # A run that died between the rename and the new container left only
        # the old one, renamed: give it its name back before going on.
        "docker", "container", "inspect", name, ">/dev/null", "2>&1", "||",
        "docker", "rename", old, name, ">/dev/null", "2>&1;",
        "docker", "rm", "-f", old, ">/dev/null", "2>&1;",
        "docker", "stop", "-t", "30", name, ">/dev/null", "&&",
        "docker", "rename", name, old, "&&",
        # No output: a client killed mid-replacement (kill -9, a dropped SSH
        # connection) must not stop the host half-way with a write to a closed pipe.
        "{", "docker", "run", "-d", *run_arguments(desired), ">/dev/null", "||",
        "{", "docker", "rm", "-f", name, ">/dev/null", "2>&1;", "docker", "rename", old, name, ";",
        "docker", "start", name, ">/dev/null;", "echo", restore, ">&2;", "exit", "1;", "};", "}",
        "&&", "docker", "rm", old, ">/dev/null",
    )  # fmt: skip


def _locked(desired: DesiredContainer, *commands: StringCommand) -> StringCommand:
    """``commands`` in one shell on the host, holding the container's lock once
    dockerd answers: a second run (say, started while a killed one's commands
    still finish on the host) waits instead of interleaving with it."""
    lock = QuoteString(layout.container_lock(desired.name))
    held = QuoteString(
        f"tfenv: another run is still replacing {desired.name} on this host "
        f"({layout.container_lock(desired.name)} held for {LOCK_WAIT} s); nothing was "
        "changed. Run again once it is done."
    )
    parts: list = ["exec", "9>>", lock, ";", "flock", "-w", str(LOCK_WAIT), "9", "||",
                   "{", "echo", held, ">&2;", "exit", "1;", "};", wait_for_docker()]  # fmt: skip
    for command in commands:
        parts += [";", command]
    return StringCommand(*parts)


_said: set[tuple[str, str, str]] = set()


def _say(name: str, text: str, colour: str = "yellow") -> None:
    """Say ``text`` once per run (op bodies run at planning and again at
    execution, or only at execution with -y)."""
    key = (host.name, name, text)
    if key in _said:
        return
    _said.add(key)
    host.log_styled(f"{name}: {text}", fg=colour, log_func=logger.info)


def _differences(differences: list[Drift]) -> str:
    lines = "\n".join(f"      {d}" for d in differences)
    return f"{len(differences)} field(s) differ:\n{lines}"


def rollout_in_progress(desired: DesiredContainer, current: ObservedContainer) -> str | None:
    """The id of the rollout that moved ``current`` off the declared image, if one did.

    Its labels say which rollout, from which image, to which one. While the
    declared image is still the one it moved from (the lock advances only when
    the rollout completes) and the container runs the one it moved to, the
    image is the rollout's business: the deploy neither rolls it back nor
    treats it as drift. Declaring another image ends that.
    """
    labels = current.labels
    if desired.rollout or not labels.get(ROLLOUT_ID_LABEL):
        return None
    moved_from, moved_to = labels.get(ROLLOUT_FROM_LABEL), labels.get(ROLLOUT_TO_LABEL)
    if moved_from == desired.image and moved_to == current.image != desired.image:
        return labels[ROLLOUT_ID_LABEL]
    return None


def is_forced(value: object) -> bool:
    """``--data force_busy=true`` (a string from the command line, or a bool)."""
    return str(value).strip().lower() in ("1", "true", "yes")


@operation()
def tf_container(
    desired: DesiredContainer,
    observed: TfNodeState | None = None,
    force_busy: bool = False,
    follow_rollout: bool = True,
):
    """
    Run ``desired`` as declared: create it, leave it, start it, or recreate it on drift.

    + desired: the resolved container (:func:`tfenv.containers.desired.desired_container`)
    + observed: the host's TfNodeState, if already read
    + force_busy: replace a container in use whatever its ``replace`` policy
      (its users' terminals get a notice first)
    + follow_rollout: leave the image a rollout in progress put there (see
      :func:`rollout_in_progress`); tfenv rollout itself passes False

    A container in use is replaced as ``desired.replace.policy`` says:
    ``when-idle`` leaves it and reports the replacement as pending (the host
    fails at the end of the run: see :func:`pending_replacements`), ``wait``
    polls on the host until it is idle, ``now`` tells its users, then replaces.

    **Example:**

    .. code:: python

        tf_container(name="Container dev", desired=desired_container(...))
    """
    state = observed or tf_node(host)
    if state.docker != "ok" or state.containers_error:
        # Never read "Docker down" as "no containers". An earlier operation of
        # this run may start Docker: read again when the deploy runs.
        if not host.state.is_executing:
            why = state.containers_error or f"Docker is {state.docker}"
            host.noop(f"{desired.name}: {why}; its state is read when it runs")
            return
        state = tf_node(host)
        if state.docker != "ok" or state.containers_error:
            why = state.containers_error or f"Docker is {state.docker} on the host"
            yield fail_host(
                f"could not read the state of container {desired.name} ({why}); nothing was "
                "changed. Check Docker there (systemctl status docker), then run again."
            )
            return
    current = state.containers.get(desired.name)
    previous = state.containers.get(desired.name + PREVIOUS_SUFFIX)
    if previous is not None:
        # A replacement was interrupted (the run killed, the host down): before
        # the new container ran, the old one gets its name back; after, it goes.
        if current is None:
            _say(desired.name, "an interrupted replacement left it renamed: restoring it first")
            yield StringCommand("docker", "rename", QuoteString(previous.name),
                                QuoteString(desired.name))  # fmt: skip
            current = dataclasses.replace(previous, name=desired.name)
            record("containers", f"{desired.name}.replacement", "complete", "interrupted")
        else:
            _say(desired.name, f"removing {previous.name}, left by an interrupted replacement")
            record("containers", f"{previous.name}.exists", "absent", "left by a replacement")
            yield StringCommand("docker", "rm", "-f", QuoteString(previous.name), ">/dev/null")
    pull = [] if state.has_image(desired.image) else [pull_command(desired.image)]
    if current is None:
        record("containers", f"{desired.name}.exists", "running", "absent")
        yield from _prepare(desired)
        yield from pull
        yield _locked(desired, StringCommand("docker", "run", "-d", *run_arguments(desired),
                                             ">/dev/null"))  # fmt: skip
        return
    rollout = rollout_in_progress(desired, current) if follow_rollout else None
    if rollout:
        record("containers", f"{desired.name}.image", desired.image, current.image,
               action="rollout", command=f"tfenv rollout status {rollout}")  # fmt: skip
        _say(
            desired.name,
            f"rollout {rollout} in progress: it runs {current.image} "
            f"(declared {desired.image} until the rollout completes); image left as it is",
        )
        kept = tuple((label, current.labels[label]) for label in ROLLOUT_LABELS)
        desired = dataclasses.replace(desired, image=current.image, rollout=kept)
    differences = drift(desired, current)
    if not differences:
        if current.running:
            during = f" (rollout {rollout} in progress)" if rollout else ""
            host.noop(f"{desired.name} runs as declared{during}")
        else:
            record("containers", f"{desired.name}.running", "running", current.status)
            yield from _prepare(desired)  # its home and exports, as for a new one
            yield _locked(desired, StringCommand("docker", "start", QuoteString(desired.name),
                                                 ">/dev/null"))  # fmt: skip
        return
    policy = "now" if force_busy else desired.replace.policy
    reasons = in_use(current, desired.replace.idle_minutes)
    busy = bool(reasons) and policy == "when-idle"
    for difference in differences:
        record(
            "containers",
            f"{desired.name}.{difference.field}",
            difference.declared,
            difference.observed,
            action="person" if busy else "apply",
            command=f"once idle; or now: tfenv reconcile --apply --force-busy (pyinfra: {OVERRIDE})"
            if busy
            else "",
        )
    if busy:
        PENDING.setdefault(host.name, {})[desired.name] = reasons
        _say(desired.name, (
            f"NOT replaced, it is in use: {'; '.join(reasons)}. Its replacement is pending "
            f"(replace: when-idle), {_differences(differences)}"
        ))  # fmt: skip
        host.noop(f"{desired.name} is in use: replacement pending")
        return
    PENDING.get(host.name, {}).pop(desired.name, None)
    note = ""
    if reasons:
        how = {"wait": f"waiting up to {desired.replace.timeout} s for it to be idle",
               "now": "its users' terminals get a notice first"}[policy]  # fmt: skip
        note = f"\n      in use ({'; '.join(reasons)}): {how}."
    _say(desired.name, f"recreating, {_differences(differences)}{note}")
    yield from _prepare(desired)
    yield from pull  # before the old container stops: a failed pull leaves it running
    guard = [busy_guard(desired.name, desired.replace, policy)] if current.running else []
    yield _locked(desired, *guard, _replace(desired))


@operation()
def pending_replacements():
    """
    Fail the host if a container's replacement was left pending because it is in use.

    Runs last, so the rest of the host is brought to its declared state first;
    the run's exit code is then not 0 while a declared change waits.

    **Example:**

    .. code:: python

        pending_replacements(name="Pending replacements")
    """
    pending = PENDING.get(host.name, {})
    if pending and host.state.is_executing:
        listed = "; ".join(f"{name} ({', '.join(why)})" for name, why in sorted(pending.items()))
        yield fail_host(
            f"replacement pending for container(s) in use: {listed}. They run on unchanged; "
            f"run the deploy again once they are idle, or replace them now with {OVERRIDE} "
            "(users get a notice on their terminals)."
        )
        return
    host.noop("no replacement pending")


@operation()
def container_files(
    desired: DesiredContainer,
    secrets: Mapping[str, SecretValue],
    authorized_keys: str,
    observed: TfNodeState | None = None,
):
    """
    Write a container's secret files and authorized keys on the host.

    + desired: the resolved container
    + secrets: secret name -> value, for every secret it mounts
    + authorized_keys: the authorized_keys text sshd reads
    + observed: the host's TfNodeState, if already read

    Secrets: ``/etc/tfenv/secrets/CONTAINER/NAME``, mode 0400, owned by the
    container user, in a root-only directory; compared by seal. A secret no
    longer declared is removed. Authorized keys, ``passwd`` and ``group`` (the
    container's only accounts): ``/etc/tfenv/containers/CONTAINER/``, root, 0644.

    **Example:**

    .. code:: python

        container_files(name="Files of dev", desired=d, secrets={...}, authorized_keys="...")
    """
    state = observed or tf_node(host)
    commands = []
    wanted = {secret_path(desired.name, name): value for name, value in secrets.items()}
    for path, value in sorted(wanted.items()):
        why = sealed_file_difference(path, value, "0400", desired.uid, desired.gid, state.sealed)
        if why:
            record("secrets", path, "written as declared (mode 0400)", why)
            commands += write_sealed_file(path, value, "0400", desired.uid, desired.gid)
    prefix = secret_path(desired.name, "")
    for path in sorted(state.sealed):
        if path.startswith(prefix) and path not in wanted:
            record("secrets", path, "absent (no longer declared)", "present")
            commands += remove_sealed_file(path)
    public = {authorized_keys_path(desired.name): authorized_keys.encode()}
    for name, content in account_files(desired).items():
        public[layout.container_file(desired.name, name)] = content
    for path, content in public.items():
        why = sealed_file_difference(path, content, "0644", 0, 0, state.sealed)
        if why:
            record("secrets", path, "written as declared (mode 0644)", why)
            commands += write_sealed_file(path, content, "0644", 0, 0, directory_mode="0755")
    if not commands:
        host.noop(
            f"{desired.name}: {len(wanted)} secret file(s), authorized keys and accounts in place"
        )
    yield from commands
