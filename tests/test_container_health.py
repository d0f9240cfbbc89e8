"""The container health check: its fact's command and parsing, what it reports as
wrong (every branch), and what the operation says or fails with."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
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


WAIT = (
    'tfenv_i=0; until docker info >/dev/null 2>&1; do tfenv_i=$((tfenv_i+1)); [ "$tfenv_i" '
    "-lt 60 ] || break; sleep 1; done ; "
)


def one(name: str, quoted: str, deep: bool) -> str:
    return (
        "for i in $(seq 180); do s=$(docker inspect --format "
        "'{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "
        f'{quoted} 2>&1); case "$s" in *starting*) sleep 0.5;; *) break;; esac; done; '
        f"echo {shlex.quote('TFENV-CONTAINER ' + name)} ; "
        f'echo "TFENV-STATE $s"; docker exec {quoted} python3 -c '
        f"{shlex.quote(PROBE)} {'deep ' if deep else ''}2>&1 | tail -n 5;"
    )


def test_one_command_waits_for_docker_then_checks_each_container() -> None:
    command = ContainerHealth().command(["dev's", "b"]).get_raw_value()
    assert command == WAIT + one("dev's", "'dev'\"'\"'s'", False) + " " + one("b", "b", False)
    deep = ContainerHealth().command(["b"], deep=True).get_raw_value()
    assert deep == WAIT + one("b", "b", True)
    result = subprocess.run(["sh", "-n"], input=command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_process_reads_each_containers_state_and_probe_lines() -> None:
    output = [
        "Warning: something",  # before any container: not a container's
        "TFENV-CONTAINER dev",
        "TFENV-STATE running healthy ",
        "noise",
        'TFENV-PROBE {"sshd": "ok", "gpus": 1}',
        "last",
        "TFENV-CONTAINER b",
        "TFENV-STATE exited",
        "a",
        "b",
        "Error: No such container: b",
    ]
    assert ContainerHealth().process(output) == {
        "dev": {"state": "running healthy", "probe": {"sshd": "ok", "gpus": 1},
                "output": ["noise", "last"]},
        "b": {"state": "exited", "probe": None,
              "output": ["a", "b", "Error: No such container: b"]},
    }  # fmt: skip
    assert ContainerHealth().process([]) == {}
    # a line merely mentioning the markers is not one
    marked = ["TFENV-CONTAINER x", " TFENV-STATE x", "xTFENV-PROBE {}"]
    assert ContainerHealth().process(marked)["x"]["state"] == ""
    assert ContainerHealth().process(marked)["x"]["probe"] is None


def test_the_probe_runs_the_tensorflow_op_only_when_deep(tmp_path) -> None:
    """The probe itself, run with a python3 whose tensorflow import is a stand-in."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "def matmul(a, b): return [[11.0]]\ndef reduce_sum(x): return 11.0\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "TFENV_SSH_PORT": "1", "PATH": "/usr/bin:/bin"}
    for args, expected in (([], None), (["deep"], "ok")):
        said = subprocess.run(
            [sys.executable, "-c", PROBE.replace("seconds=90", "seconds=0"), *args],
            capture_output=True, text=True, env=env, timeout=60,
        ).stdout  # fmt: skip
        probe = json.loads(said.split("TFENV-PROBE ", 1)[1])
        assert probe.get("tensorflow") == expected, (args, probe)


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


def test_a_light_check_does_not_ask_for_the_tensorflow_op() -> None:
    probe = {"sshd": "ok", "jupyter": "ok", "gpus": 2}  # no "tensorflow": not run
    assert problems(result(probe=probe), 2, True, deep=False) == []
    assert problems(result(probe=probe), 2, True, deep=True) == ["a TensorFlow op failed: None"]


def test_zero_gpus_declared_is_checked() -> None:
    assert problems(result(probe={**HEALTHY, "gpus": 0}), 0, False) == []
    assert problems(result(probe={**HEALTHY, "gpus": 1}), 0, False) == [
        "1 GPU(s) visible inside, 0 declared"
    ]


# -- the operations -----------------------------------------------------------------


def run(op, health: dict | None = None, executing: bool = True, deep_why=(True, "asked"),
        containers: list[str] | None = None, **kwargs: Any):  # fmt: skip
    """Run ``op`` on a fake host whose ContainerHealth fact is ``health`` (name -> result)."""
    state = FakeState()
    state.is_executing = executing
    host = create_host(state, name="gpu1")
    said: list[tuple[str, str, str]] = []
    host.log_styled = lambda text, fg, log_func: said.append((text, fg, log_func.__name__))
    asked: list[dict] = []

    # Patched rather than injected: the fake host reads the fact's arguments from
    # its command's signature, which mutation testing wraps.
    def get_fact(fact, **arguments: Any) -> dict:
        assert fact is ContainerHealth
        asked.append(arguments)
        assert health is not None
        return health

    host.get_fact = get_fact
    original = ch.deep_checks
    ch.deep_checks = lambda _host: deep_why
    try:
        with ctx_state.use(state), ctx_host.use(host):
            commands = list(op._inner(**kwargs))
    finally:
        ch.deep_checks = original
    shown = [
        (c.function.__name__, c.args) if isinstance(c, FunctionCommand) else c.get_raw_value()
        for c in commands
        if isinstance(c, FunctionCommand | StringCommand)
    ]
    assert len(shown) == len(commands)
    if containers is not None:
        assert [a["containers"] for a in asked] == [containers]
    return shown, host.noop_description, said, asked


DEV = [ch.HealthCheck("dev", gpus=2)]


def test_the_health_check_is_left_for_the_run() -> None:
    assert run(ch.containers_health, executing=False, checks=DEV) == (
        [], "checked when the deploy runs", [], [],
    )  # fmt: skip
    assert run(ch.containers_health, checks=[]) == ([], "no container", [], [])


def test_a_healthy_container_is_reported_in_green() -> None:
    line = "dev: running, healthy, sshd answers, 2 GPU(s) inside, TensorFlow op ok"
    assert run(ch.containers_health, {"dev": result()}, checks=DEV, containers=["dev"]) == (
        [], "1 container(s) healthy", [(line, "green", "info")], [{"containers": ["dev"],
                                                                   "deep": True}],
    )  # fmt: skip
    with_jupyter = (
        "dev: running, healthy, sshd answers, Jupyter answers with the token only, "
        "2 GPU(s) inside, TensorFlow op ok"
    )
    checks = [ch.HealthCheck("dev", jupyter=True)]
    assert run(ch.containers_health, {"dev": result()}, checks=checks)[2] == [
        (with_jupyter, "green", "info")
    ]


def test_nothing_changed_gives_the_light_check_in_one_command_for_all() -> None:
    light = {"sshd": "ok", "gpus": 2}
    health = {"a": result(probe=light), "b": result(probe=light)}
    checks = [ch.HealthCheck("a", gpus=2), ch.HealthCheck("b", gpus=2)]
    _, noop, said, asked = run(ch.containers_health, health, deep_why=(False, "nothing changed"),
                               checks=checks)  # fmt: skip
    assert asked == [{"containers": ["a", "b"], "deep": False}]  # one fact: one command
    assert noop == "2 container(s) healthy (light check)"
    assert [text for text, _, _ in said] == [
        "a: running, healthy, sshd answers, 2 GPU(s) inside, light check (nothing changed)",
        "b: running, healthy, sshd answers, 2 GPU(s) inside, light check (nothing changed)",
    ]
    # deep=True given: no question asked, the TF op runs
    _, _, _, asked = run(ch.containers_health, {"a": result(), "b": result()},
                         deep_why=(False, "never asked"), checks=checks, deep=True)  # fmt: skip
    assert asked == [{"containers": ["a", "b"], "deep": True}]


def test_an_unhealthy_container_fails_the_host_with_every_problem() -> None:
    broken = result("running unhealthy", {**HEALTHY, "sshd": "error: timeout"})
    health = {"dev": broken, "ok": result()}
    checks = [*DEV, ch.HealthCheck("ok", gpus=2), ch.HealthCheck("gone")]
    commands, _, said, _ = run(ch.containers_health, health, checks=checks)
    assert commands == [
        (
            "report_failure",
            (
                "container dev: Docker health is unhealthy; sshd: error: timeout. "
                "See: docker logs dev / container gone: not running (docker says: nothing); "
                "the in-container probe did not run (no answer). See: docker logs gone",
            ),
        )
    ]
    assert [text for text, _, _ in said] == [
        "ok: running, healthy, sshd answers, 2 GPU(s) inside, TensorFlow op ok"
    ]


def test_the_summary_is_said_only_when_the_deploy_runs() -> None:
    lines = ["driver 550.127.05", "dev: registry/tf:2.17"]
    assert run(ch.node_summary, lines=lines)[:3] == (
        [],
        "summary",
        [("TF node ready: driver 550.127.05; dev: registry/tf:2.17", "green", "info")],
    )
    assert run(ch.node_summary, executing=False, lines=lines)[:3] == ([], "summary", [])
