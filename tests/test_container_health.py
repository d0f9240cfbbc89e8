"""The container health check: its fact's command and parsing, what it reports as
wrong (every branch), and what the operation says or fails with."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from pyinfra.api import FunctionCommand, StringCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from tfenv.operations import container_health as ch
from tfenv.operations.container_health import PROBE, ContainerHealth, problems

HEALTHY = {"sshd": "ok", "jupyter": "ok", "gpus": 2, "tensorflow": "ok"}


def result(state: str = "running healthy", probe: dict | None = HEALTHY, output=()) -> dict:
    return {"state": state, "probe": probe, "output": list(output)}


# -- the fact ---------------------------------------------------------------------


def test_the_command_waits_for_docker_and_its_health_then_runs_the_probe() -> None:
    assert ContainerHealth().command("dev's").get_raw_value() == (
        'tfenv_i=0; until docker info >/dev/null 2>&1; do tfenv_i=$((tfenv_i+1)); [ "$tfenv_i" '
        "-lt 60 ] || break; sleep 1; done ; for i in $(seq 90); do s=$(docker inspect --format "
        "'{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "
        "'dev'\"'\"'s' 2>&1); case \"$s\" in *starting*) sleep 1;; *) break;; esac; done; "
        "echo \"TFENV-STATE $s\"; docker exec 'dev'\"'\"'s' python3 -c "
        f"{shlex.quote(PROBE)} 2>&1 | tail -n 5"
    )


def test_process_reads_the_state_and_the_probe_lines() -> None:
    output = [
        "Warning: something",
        "TFENV-STATE running healthy ",
        "noise",
        'TFENV-PROBE {"sshd": "ok", "gpus": 1}',
        "last",
    ]
    assert ContainerHealth().process(output) == {
        "state": "running healthy",
        "probe": {"sshd": "ok", "gpus": 1},
        "output": ["noise", 'TFENV-PROBE {"sshd": "ok", "gpus": 1}', "last"],
    }


def test_process_without_the_probe_keeps_the_last_lines_to_show() -> None:
    output = ["TFENV-STATE exited", "a", "b", "Error: No such container: dev"]
    assert ContainerHealth().process(output) == {
        "state": "exited",
        "probe": None,
        "output": ["a", "b", "Error: No such container: dev"],
    }
    assert ContainerHealth().process([]) == {"state": "", "probe": None, "output": []}
    # a line merely mentioning the markers is not one
    assert ContainerHealth().process([" TFENV-STATE x", "xTFENV-PROBE {}"])["state"] == ""


# -- problems() ---------------------------------------------------------------------


def test_a_healthy_container_has_no_problem() -> None:
    assert problems(result(), 2, True) == []
    assert problems(result("running"), 2, True) == []  # no healthcheck declared
    assert problems(result(), None, False) == []


@pytest.mark.parametrize(
    ("state", "found"),
    [
        ("", "not running (docker says: nothing)"),
        ("exited", "not running (docker says: exited)"),
        ("Error: No such object: dev", "not running (docker says: Error: No such object: dev)"),
        ("restarting healthy", "not running (docker says: restarting healthy)"),
        ("running unhealthy", "Docker health is unhealthy"),
        ("running starting", "Docker health is starting"),
    ],
)
def test_docker_state_and_health(state: str, found: str) -> None:
    assert problems(result(state), 2, True) == [found]


def test_a_probe_that_did_not_run_is_shown_with_its_output() -> None:
    assert problems(result(probe=None), 2, True) == [
        "the in-container probe did not run (no output)"
    ]
    said = ["OCI runtime exec failed", "exit status 126"]
    assert problems(result("exited", probe=None, output=said), 2, True) == [
        "not running (docker says: exited)",
        "the in-container probe did not run (OCI runtime exec failed / exit status 126)",
    ]
    long = ["x" * 400]
    assert problems(result(probe=None, output=long), 2, True) == [
        f"the in-container probe did not run ({'x' * 300})"
    ]


def test_each_failed_probe_check_is_named() -> None:
    probe = {"sshd": "error: ConnectionRefusedError: refused", "jupyter": "answers WITHOUT "
             "the token", "gpus": 0, "tensorflow": "ImportError: libcudart"}  # fmt: skip
    assert problems(result(probe=probe), 2, True) == [
        "sshd: error: ConnectionRefusedError: refused",
        "Jupyter: answers WITHOUT the token",
        "0 GPU(s) visible inside, 2 declared",
        "a TensorFlow op failed: ImportError: libcudart",
    ]
    # Jupyter not declared, GPUs not checked: only sshd and TensorFlow count
    assert problems(result(probe=probe), None, False) == [
        "sshd: error: ConnectionRefusedError: refused",
        "a TensorFlow op failed: ImportError: libcudart",
    ]
    assert problems(result(probe={}), 0, True) == [
        "sshd: None",
        "Jupyter: None",
        "None GPU(s) visible inside, 0 declared",
        "a TensorFlow op failed: None",
    ]


def test_zero_gpus_declared_is_checked() -> None:
    assert problems(result(probe={**HEALTHY, "gpus": 0}), 0, False) == []
    assert problems(result(probe={**HEALTHY, "gpus": 1}), 0, False) == [
        "1 GPU(s) visible inside, 0 declared"
    ]


# -- the operations -----------------------------------------------------------------


def run(op, health: dict | None = None, executing: bool = True, **kwargs: Any):
    """Run ``op`` on a fake host whose ContainerHealth fact of ``dev`` is ``health``."""
    state = FakeState()
    state.is_executing = executing
    host = create_host(state, name="gpu1")
    said: list[tuple[str, str, str]] = []
    host.log_styled = lambda text, fg, log_func: said.append((text, fg, log_func.__name__))

    # Patched rather than injected: the fake host reads the fact's arguments from
    # its command's signature, which mutation testing wraps.
    def get_fact(fact, **arguments: Any) -> dict:
        assert (fact, arguments) == (ContainerHealth, {"container": "dev"})
        assert health is not None
        return health

    host.get_fact = get_fact
    with ctx_state.use(state), ctx_host.use(host):
        commands = list(op._inner(**kwargs))
    shown = [
        (c.function.__name__, c.args) if isinstance(c, FunctionCommand) else c.get_raw_value()
        for c in commands
        if isinstance(c, FunctionCommand | StringCommand)
    ]
    assert len(shown) == len(commands)
    return shown, host.noop_description, said


def test_the_health_check_is_left_for_the_run() -> None:
    assert run(ch.container_health, executing=False, container="dev") == (
        [],
        "checked when the deploy runs",
        [],
    )


def test_a_healthy_container_is_reported_in_green() -> None:
    line = "dev: running, healthy, sshd answers, 2 GPU(s) inside, TensorFlow op ok"
    assert run(ch.container_health, result(), container="dev", gpus=2) == (
        [],
        line,
        [(line, "green", "info")],
    )
    with_jupyter = (
        "dev: running, healthy, sshd answers, Jupyter answers with the token only, "
        "2 GPU(s) inside, TensorFlow op ok"
    )
    assert run(ch.container_health, result(), container="dev", jupyter=True) == (
        [],
        with_jupyter,
        [(with_jupyter, "green", "info")],
    )


def test_an_unhealthy_container_fails_the_host_with_every_problem() -> None:
    broken = result("running unhealthy", {**HEALTHY, "sshd": "error: timeout"})
    commands, _, said = run(ch.container_health, broken, container="dev", gpus=2)
    assert commands == [
        (
            "report_failure",
            (
                "container dev: Docker health is unhealthy; sshd: error: timeout. "
                "See: docker logs dev",
            ),
        )
    ]
    assert said == []


def test_the_summary_is_said_only_when_the_deploy_runs() -> None:
    lines = ["driver 550.127.05", "dev: registry/tf:2.17"]
    assert run(ch.node_summary, lines=lines) == (
        [],
        "summary",
        [("TF node ready: driver 550.127.05; dev: registry/tf:2.17", "green", "info")],
    )
    assert run(ch.node_summary, executing=False, lines=lines) == ([], "summary", [])
