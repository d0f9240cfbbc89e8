"""The tf_container operation in pyinfra's own test style: facts in, exact commands out.

The container is the lab's ``dev`` (tests/test_container_drift.py), observed as
the real ``docker inspect`` capture. What other modules render (the ``docker
run`` arguments, the busy-check functions, the pull) is taken from them; what
this operation adds around it is spelled out literally, quoting included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from inspect_oracle import rendered
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host
from test_container_drift import NEW_IMAGE, OBSERVED, desired

from tfenv.containers.busy import BUSY_FUNCTIONS
from tfenv.containers.desired import DesiredContainer, account_files
from tfenv.containers.drift import Drift
from tfenv.facts.tf_node import ObservedContainer, SealedFile, TfNodeState
from tfenv.model.secrets import SecretValue
from tfenv.operations import tf_container as tc
from tfenv.operations.image import pull_command
from tfenv.operations.sealed_file import remove_sealed_file, seal_of, write_sealed_file

WAIT = (
    'tfenv_i=0; until docker info >/dev/null 2>&1; do tfenv_i=$((tfenv_i+1)); [ "$tfenv_i" -lt '
    "60 ] || { echo 'tfenv: Docker does not answer on this host (waited 60 s); nothing more was "
    "changed. Check it (systemctl status docker), then run again.' >&2; exit 1; }; sleep 1; done"
)
LOCKED = (
    "exec 9>> /run/lock/tfenv-container-dev.lock ; flock -w 900 9 || { echo 'tfenv: another "
    "run is still replacing dev on this host (/run/lock/tfenv-container-dev.lock held for 900 "
    "s); nothing was changed. Run again once it is done.' >&2; exit 1; }; " + WAIT
)
PREPARE = [
    "install -d -m 0700 -o 1000 -g 1000 /var/lib/tfenv/containers/dev/ssh-host-keys",
    "chown -R 1000:1000 /var/lib/tfenv/containers/dev/ssh-host-keys",
    "mountpoint -q /mnt/checkpoints || { echo 'tfenv: /mnt/checkpoints is not mounted: dev is "
    "not started, so nothing meant for the export (home, checkpoints) is written to the local "
    "disk. Check the NFS mount (systemctl status, the server), then run the deploy again.' >&2; "
    "exit 1; }",
    "install -d -m 0755 /var/lib/tfenv/containers/dev",
    "install -d -m 0750 -o 1000 -g 1000 /var/lib/tfenv/containers/dev/home",
    "install -d -o 1000 -g 1000 /mnt/checkpoints/dev",
]
CHECK = "tfenv_gpu_apps; r=$(tfenv_busy dev 30 );"
WHEN_IDLE_GUARD = (
    f'{BUSY_FUNCTIONS} {CHECK} [ -z "$r" ] || {{ echo \'tfenv: dev came into use; not '
    'replaced (--data force_busy=true replaces it anyway):\' "$r" >&2; exit 1; }'
)
IMAGE_LINE = (
    "      image (declared registry.lab.test:5000/tfenv/tensorflow@sha256:" + "4" * 64
    + ", running " + OBSERVED.image + ")"
)  # fmt: skip
NOT_READ = "whether it is in use could not be read, so it counts as in use"


def replace_command(spec: DesiredContainer) -> str:
    """What _replace renders for ``dev`` (the run arguments: the option table's)."""
    return (
        "docker container inspect dev >/dev/null 2>&1 || docker rename dev.tfenv-previous dev "
        ">/dev/null 2>&1; docker rm -f dev.tfenv-previous >/dev/null 2>&1; docker stop -t 30 "
        "dev >/dev/null && docker rename dev dev.tfenv-previous && { docker run -d "
        f"{rendered(spec)} >/dev/null || {{ docker rm -f dev >/dev/null 2>&1; docker rename "
        "dev.tfenv-previous dev ; docker start dev >/dev/null; echo 'tfenv: the new dev did not "
        "start; the previous container runs again' >&2; exit 1; }; } && docker rm "
        "dev.tfenv-previous >/dev/null"
    )


@dataclasses.dataclass
class Ran:
    commands: list[Any]  # raw strings, or (function name, args) of FunctionCommands
    noop: str | None
    said: list[tuple[str, str, str]]  # (text, colour, log function)


def raw(command: object) -> Any:
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    if isinstance(command, FunctionCommand):
        return (command.function.__name__, command.args)
    if isinstance(command, FileUploadCommand):
        command.src.seek(0)
        return ("upload", command.src.read(), command.dest)
    return command


def run(op, facts: dict | None = None, executing: bool = False, host_name: str = "gpu1",
        **kwargs: Any) -> Ran:  # fmt: skip
    """Run ``op`` as pyinfra_testing does (FakeState, a fake host with injected facts)."""
    state = FakeState()
    state.is_executing = executing
    host = create_host(state, name=host_name, facts=facts or {})
    said: list[tuple[str, str, str]] = []

    def log_styled(text: str, fg: str, log_func) -> None:
        said.append((text, fg, log_func.__name__))

    host.log_styled = log_styled
    with ctx_state.use(state), ctx_host.use(host):
        commands = [raw(c) for c in op._inner(**kwargs)]
    return Ran(commands, host.noop_description, said)


@pytest.fixture(autouse=True)
def fresh_run() -> Iterator[None]:
    # Both are per-run module state: each test is one run.
    tc._said.clear()
    tc.PENDING.clear()
    yield
    tc._said.clear()
    tc.PENDING.clear()


def node(**containers: ObservedContainer) -> TfNodeState:
    """Docker up, the pinned images of both tests present, ``containers`` there."""
    images = {desired().image: "sha256:1", desired(pinned=NEW_IMAGE).image: "sha256:2"}
    return TfNodeState(docker="ok", images=images, containers=containers)


IDLE = dataclasses.replace(OBSERVED, busy_checked=True)
STOPPED = dataclasses.replace(OBSERVED, running=False)


# -- the operation ------------------------------------------------------------


def test_a_fresh_host_prepares_pulls_and_runs() -> None:
    spec = desired()
    ran = run(tc.tf_container, desired=spec, observed=TfNodeState(docker="ok"))
    assert ran.commands == [
        *PREPARE,
        pull_command(spec.image).get_raw_value(),
        f"{LOCKED} ; docker run -d {rendered(spec)} >/dev/null",
    ]
    assert ran.said == []


def test_an_image_already_there_is_not_pulled() -> None:
    spec = desired()
    ran = run(tc.tf_container, desired=spec, observed=node())
    assert ran.commands == [*PREPARE, f"{LOCKED} ; docker run -d {rendered(spec)} >/dev/null"]


def test_running_as_declared_is_a_noop() -> None:
    ran = run(tc.tf_container, desired=desired(), observed=node(dev=OBSERVED))
    assert (ran.commands, ran.noop, ran.said) == ([], "dev runs as declared", [])


def test_a_stopped_container_is_started_not_recreated() -> None:
    ran = run(tc.tf_container, desired=desired(), observed=node(dev=STOPPED))
    assert ran.commands == [*PREPARE, f"{LOCKED} ; docker start dev >/dev/null"]


def test_drift_on_a_busy_container_when_idle_is_pending() -> None:
    ran = run(tc.tf_container, desired=desired(pinned=NEW_IMAGE), observed=node(dev=OBSERVED))
    assert ran.commands == []
    assert ran.noop == "dev is in use: replacement pending"
    assert ran.said == [(
        f"dev: NOT replaced, it is in use: {NOT_READ}. Its replacement is pending (replace: "
        f"when-idle), 1 field(s) differ:\n{IMAGE_LINE}", "yellow", "info",
    )]  # fmt: skip
    assert tc.PENDING == {"gpu1": {"dev": [NOT_READ]}}


def test_drift_on_an_idle_container_replaces_it_behind_the_when_idle_guard() -> None:
    spec = desired(pinned=NEW_IMAGE)
    tc.PENDING["gpu1"] = {"dev": ["earlier"], "other": ["kept"]}
    ran = run(tc.tf_container, desired=spec, observed=node(dev=IDLE))
    assert ran.commands == [*PREPARE, f"{LOCKED} ; {WHEN_IDLE_GUARD} ; {replace_command(spec)}"]
    assert ran.said == [(f"dev: recreating, 1 field(s) differ:\n{IMAGE_LINE}", "yellow", "info")]
    assert tc.PENDING == {"gpu1": {"other": ["kept"]}}  # no longer pending


def test_the_new_image_is_pulled_before_the_old_container_stops() -> None:
    spec = desired(pinned=NEW_IMAGE)
    observed = dataclasses.replace(node(dev=IDLE), images={})
    ran = run(tc.tf_container, desired=spec, observed=observed)
    assert ran.commands == [
        *PREPARE,
        pull_command(spec.image).get_raw_value(),
        f"{LOCKED} ; {WHEN_IDLE_GUARD} ; {replace_command(spec)}",
    ]


def test_a_stopped_container_with_drift_is_replaced_without_a_guard() -> None:
    spec = desired(pinned=NEW_IMAGE)
    ran = run(tc.tf_container, desired=spec, observed=node(dev=STOPPED))
    assert ran.commands == [*PREPARE, f"{LOCKED} ; {replace_command(spec)}"]
    assert ran.said == [(f"dev: recreating, 1 field(s) differ:\n{IMAGE_LINE}", "yellow", "info")]


WAIT_GUARD = (
    f'{BUSY_FUNCTIONS} {CHECK} end=$(( $(date +%s) + 120 )); while [ -n "$r" ]; do '
    '[ "$(date +%s)" -lt "$end" ] || { echo \'tfenv: dev is still in use after 120 s; not '
    'replaced (run again later, or --data force_busy=true):\' "$r" >&2; exit 1; }; sleep 3; '
    f"{CHECK} done"
)
NOW_GUARD = (
    f'{BUSY_FUNCTIONS} {CHECK} [ -z "$r" ] || {{ docker exec dev sh -c \'for t in '
    '/dev/pts/[0-9]*; do [ -w "$t" ] && printf "\\r\\n%s\\r\\n" "$1" > "$t"; done; '
    "true' sh '*** tfenv: this container (dev) is replaced in 10 seconds by a deploy. Save "
    "your work now. Your home directory and checkpoints are kept; reconnect in a minute. ***' "
    "; sleep 10 ; }"
)


def test_drift_on_a_busy_container_with_wait_polls_on_the_host() -> None:
    spec = desired(pinned=NEW_IMAGE, replace={"policy": "wait", "timeout": 120})
    ran = run(tc.tf_container, desired=spec, observed=node(dev=OBSERVED))
    assert ran.commands == [*PREPARE, f"{LOCKED} ; {WAIT_GUARD} ; {replace_command(spec)}"]
    assert ran.said == [(
        f"dev: recreating, 1 field(s) differ:\n{IMAGE_LINE}\n      in use ({NOT_READ}): "
        "waiting up to 120 s for it to be idle.", "yellow", "info",
    )]  # fmt: skip
    assert tc.PENDING == {}


def test_drift_on_a_busy_container_with_now_tells_its_users_first() -> None:
    spec = desired(pinned=NEW_IMAGE, replace={"policy": "now"})
    ran = run(tc.tf_container, desired=spec, observed=node(dev=OBSERVED))
    assert ran.commands == [*PREPARE, f"{LOCKED} ; {NOW_GUARD} ; {replace_command(spec)}"]
    assert ran.said == [(
        f"dev: recreating, 1 field(s) differ:\n{IMAGE_LINE}\n      in use ({NOT_READ}): "
        "its users' terminals get a notice first.", "yellow", "info",
    )]  # fmt: skip


def test_force_busy_replaces_a_when_idle_container_in_use_as_now_does() -> None:
    spec = desired(pinned=NEW_IMAGE)
    busy = dataclasses.replace(OBSERVED, busy=["gpu 443, python3, 1542"], busy_checked=True)
    ran = run(tc.tf_container, desired=spec, observed=node(dev=busy), force_busy=True)
    assert ran.commands == [*PREPARE, f"{LOCKED} ; {NOW_GUARD} ; {replace_command(spec)}"]
    assert ran.said == [(
        f"dev: recreating, 1 field(s) differ:\n{IMAGE_LINE}\n      in use (GPU process 443 "
        "(python3, 1542 MiB)): its users' terminals get a notice first.", "yellow", "info",
    )]  # fmt: skip
    assert tc.PENDING == {}


def test_docker_down_while_planning_is_read_again_when_it_runs() -> None:
    ran = run(tc.tf_container, desired=desired(), observed=TfNodeState(docker="down"))
    assert (ran.commands, ran.noop) == ([], "dev: Docker is down; its state is read when it runs")
    # a read error is never "no containers" either
    errored = TfNodeState(docker="ok", containers_error="docker ps: permission denied")
    ran = run(tc.tf_container, desired=desired(), observed=errored)
    assert (ran.commands, ran.noop) == (
        [], "dev: docker ps: permission denied; its state is read when it runs"
    )  # fmt: skip


def test_docker_still_down_when_it_runs_fails_the_host() -> None:
    ran = run(tc.tf_container, facts={"tf_node.TfNode": {"docker": "absent"}}, executing=True,
              desired=desired(), observed=TfNodeState(docker="down"))  # fmt: skip
    assert ran.commands == [("report_failure", (
        "could not read the state of container dev (Docker is absent on the host); nothing "
        "was changed. Check Docker there (systemctl status docker), then run again.",
    ))]  # fmt: skip
    facts = {"tf_node.TfNode": {"docker": "ok", "containers_error": "docker ps: timed out"}}
    ran = run(tc.tf_container, facts=facts, executing=True, desired=desired(),
              observed=TfNodeState(docker="down"))  # fmt: skip
    assert ran.commands == [("report_failure", (
        "could not read the state of container dev (docker ps: timed out); nothing was "
        "changed. Check Docker there (systemctl status docker), then run again.",
    ))]  # fmt: skip


def test_docker_up_by_the_time_it_runs_goes_on_with_the_new_reading() -> None:
    spec = desired()
    facts = {"tf_node.TfNode": {"docker": "ok", "images": {spec.image: "sha256:1"}}}
    ran = run(tc.tf_container, facts=facts, executing=True, desired=spec,
              observed=TfNodeState(docker="down"))  # fmt: skip
    assert ran.commands == [*PREPARE, f"{LOCKED} ; docker run -d {rendered(spec)} >/dev/null"]


def test_an_interrupted_replacement_without_the_container_gets_its_name_back() -> None:
    previous = dataclasses.replace(OBSERVED, name="dev.tfenv-previous")
    ran = run(tc.tf_container, desired=desired(),
              observed=node(**{"dev.tfenv-previous": previous}))  # fmt: skip
    assert ran.commands == ["docker rename dev.tfenv-previous dev"]
    assert ran.noop == "dev runs as declared"  # the renamed one is then compared
    assert ran.said == [
        ("dev: an interrupted replacement left it renamed: restoring it first", "yellow", "info")
    ]


def test_an_interrupted_replacement_after_the_new_container_removes_the_old_one() -> None:
    previous = dataclasses.replace(OBSERVED, name="dev.tfenv-previous")
    ran = run(tc.tf_container, desired=desired(),
              observed=node(dev=OBSERVED, **{"dev.tfenv-previous": previous}))  # fmt: skip
    assert ran.commands == ["docker rm -f dev.tfenv-previous >/dev/null"]
    assert ran.noop == "dev runs as declared"
    assert ran.said == [(
        "dev: removing dev.tfenv-previous, left by an interrupted replacement", "yellow", "info",
    )]  # fmt: skip


def test_a_message_is_said_once_per_run_and_host() -> None:
    spec, observed = desired(pinned=NEW_IMAGE), node(dev=OBSERVED)
    first = run(tc.tf_container, desired=spec, observed=observed)
    again = run(tc.tf_container, desired=spec, observed=observed)  # pyinfra's second pass
    other = run(tc.tf_container, desired=spec, observed=observed, host_name="gpu2")
    assert len(first.said) == 1
    assert again.said == []
    assert other.said == first.said


def test_say_defaults_to_yellow_and_takes_a_colour() -> None:
    said: list[tuple[str, str, str]] = []
    host = create_host(FakeState(), name="gpu1")
    host.log_styled = lambda text, fg, log_func: said.append((text, fg, log_func.__name__))
    with ctx_host.use(host):
        tc._say("dev", "one")
        tc._say("dev", "two", "red")
        tc._say("dev", "one")
        tc._say("other", "one")
    assert said == [("dev: one", "yellow", "info"), ("dev: two", "red", "info"),
                    ("other: one", "yellow", "info")]  # fmt: skip


def test_pending_replacements_fail_the_host_when_it_runs() -> None:
    tc.PENDING["gpu1"] = {
        "b": ["an SSH session from 10.0.0.1:22"],
        "a": ["GPU process 7 (python3, 10 MiB)", "Jupyter kernel 1 is busy"],
    }
    ran = run(tc.pending_replacements, executing=True)
    assert ran.commands == [("report_failure", (
        "replacement pending for container(s) in use: a (GPU process 7 (python3, 10 MiB), "
        "Jupyter kernel 1 is busy); b (an SSH session from 10.0.0.1:22). They run on "
        "unchanged; run the deploy again once they are idle, or replace them now with --data "
        "force_busy=true (users get a notice on their terminals).",
    ))]  # fmt: skip
    planning = run(tc.pending_replacements)
    assert (planning.commands, planning.noop) == ([], "no replacement pending")
    other_host = run(tc.pending_replacements, executing=True, host_name="gpu2")
    assert (other_host.commands, other_host.noop) == ([], "no replacement pending")


# -- the command builders -----------------------------------------------------


def test_prepare_quotes_paths_and_skips_what_is_not_declared() -> None:
    spec = dataclasses.replace(desired(), name="dev 2", uid=1001, gid=1002,
                               home_source="/srv/tf homes/dev 2", checkpoint_source=None,
                               needs_mounted=("/mnt/a b", "/mnt/c"))  # fmt: skip
    message = (
        "is not mounted: dev 2 is not started, so nothing meant for the export (home, "
        "checkpoints) is written to the local disk. Check the NFS mount (systemctl status, "
        "the server), then run the deploy again."
    )
    assert [c.get_raw_value() for c in tc._prepare(spec)] == [
        "install -d -m 0700 -o 1001 -g 1002 '/var/lib/tfenv/containers/dev 2/ssh-host-keys'",
        "chown -R 1001:1002 '/var/lib/tfenv/containers/dev 2/ssh-host-keys'",
        f"mountpoint -q '/mnt/a b' || {{ echo 'tfenv: /mnt/a b {message}' >&2; exit 1; }}",
        f"mountpoint -q /mnt/c || {{ echo 'tfenv: /mnt/c {message}' >&2; exit 1; }}",
        "install -d -m 0755 '/srv/tf homes'",
        "install -d -m 0750 -o 1001 -g 1002 '/srv/tf homes/dev 2'",
    ]


def test_guard_uses_the_declared_idle_minutes_and_quotes_the_name() -> None:
    spec = desired(replace={"policy": "when-idle", "idle_minutes": 5})
    spec = dataclasses.replace(spec, name="dev's")
    assert tc.busy_guard(spec.name, spec.replace, "when-idle").get_raw_value() == (
        f"{BUSY_FUNCTIONS} tfenv_gpu_apps; r=$(tfenv_busy 'dev'\"'\"'s' 5 ); [ -z \"$r\" ] || "
        "{ echo 'tfenv: dev'\"'\"'s came into use; not replaced (--data force_busy=true "
        'replaces it anyway):\' "$r" >&2; exit 1; }'
    )


def test_the_reboot_guard_says_the_host_is_not_rebooted() -> None:
    spec = desired(replace={"policy": "wait", "timeout": 120})
    command = tc.busy_guard(spec.name, spec.replace, "wait", "rebooted").get_raw_value()
    assert "end=$(( $(date +%s) + 120 ))" in command
    assert "dev is still in use after 120 s; the host is not rebooted" in command
    now = tc.busy_guard(spec.name, spec.replace, "now", "rebooted").get_raw_value()
    assert "this host is rebooted (NVIDIA driver) and dev restarts in 10 seconds" in now


def test_locked_with_no_command_only_takes_the_lock() -> None:
    assert tc._locked(desired()).get_raw_value() == LOCKED
    two = tc._locked(desired(), StringCommand("true"), StringCommand("false"))
    assert two.get_raw_value() == f"{LOCKED} ; true ; false"


def test_differences_lists_each_field_on_its_own_line() -> None:
    assert tc._differences([Drift("shm_size", "1g", "2g"), Drift("gpus", "all", "0,1")]) == (
        "2 field(s) differ:\n      shm_size (declared 1g, running 2g)\n"
        "      gpus (declared all, running 0,1)"
    )


@pytest.mark.parametrize("value", ["1", "true", "yes", " TRUE ", "Yes", True])
def test_force_busy_values_that_force(value: object) -> None:
    assert tc.is_forced(value) is True


@pytest.mark.parametrize("value", ["0", "false", "no", "", "y", "on", False, None, 2])
def test_force_busy_values_that_do_not_force(value: object) -> None:
    assert tc.is_forced(value) is False


# -- container_files -------------------------------------------------------------


def test_container_files_in_place_is_a_noop_and_stale_secrets_go() -> None:
    spec = desired()
    token = SecretValue("jupyter_token_dev", "s3cret")
    files = {"/etc/tfenv/secrets/dev/jupyter_token_dev": (token, "400", 1000, 1000)}
    public = {"/etc/tfenv/containers/dev/authorized_keys": b"ssh-ed25519 AAAA k\n"}
    for name, content in account_files(spec).items():
        public[f"/etc/tfenv/containers/dev/{name}"] = content
    sealed = {path: SealedFile(seal_of(path, value), "intact", mode, uid, gid)
              for path, (value, mode, uid, gid) in files.items()}  # fmt: skip
    sealed |= {path: SealedFile(seal_of(path, content), "intact", "644", 0, 0)
               for path, content in public.items()}  # fmt: skip
    state = TfNodeState(docker="ok", sealed=sealed)
    kwargs = {"desired": spec, "secrets": {"jupyter_token_dev": token},
              "authorized_keys": "ssh-ed25519 AAAA k\n"}  # fmt: skip
    ran = run(tc.container_files, observed=state, **kwargs)
    assert (ran.commands, ran.noop) == (
        [],
        "dev: 1 secret file(s), authorized keys and accounts in place",
    )
    stale = "/etc/tfenv/secrets/dev/old_token"
    state.sealed[stale] = SealedFile("x", "intact", "400", 1000, 1000)
    state.sealed["/etc/tfenv/secrets/dev2/old_token"] = SealedFile("x", "intact", "400", 1, 1)
    ran = run(tc.container_files, observed=state, **kwargs)
    assert ran.commands == [raw(c) for c in remove_sealed_file(stale)]
    # a changed token is written again, 0400 and owned by the container user
    other = SecretValue("jupyter_token_dev", "n3w")
    kwargs["secrets"] = {"jupyter_token_dev": other}
    ran = run(tc.container_files, observed=state, **kwargs)
    path = "/etc/tfenv/secrets/dev/jupyter_token_dev"
    assert ran.commands == [
        *(raw(c) for c in write_sealed_file(path, other, "0400", 1000, 1000)),
        *(raw(c) for c in remove_sealed_file(stale)),
    ]


def test_the_guard_before_a_driver_reboot_can_leave_out_the_gpu_signal() -> None:
    spec = desired(replace={"policy": "when-idle"})
    with_gpu = tc.busy_guard(spec.name, spec.replace, "when-idle", "rebooted").get_raw_value()
    without = tc.busy_guard(spec.name, spec.replace, "when-idle", "rebooted",
                            gpu=False).get_raw_value()  # fmt: skip
    assert "tfenv_gpu_apps; r=$(tfenv_busy dev" in with_gpu
    assert "tfenv_apps=; r=$(tfenv_busy dev" in without
    assert "tfenv_gpu_apps;" not in without.replace(BUSY_FUNCTIONS, "")
