"""Light or deep health checks: did anything change on this host in this run?"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pyinfra.api.operation import OperationMeta
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from tfenv.operations import gpu_check
from tfenv.operations.run_state import changed_in_this_run, deep_checks, deep_requested
from tfenv.reconcile.env import DEEP_ENV


def meta(done: bool, commands: int) -> OperationMeta:
    operation = OperationMeta("h", None)
    if done:
        operation.set_complete(True, ["cmd"] * commands, SimpleNamespace())
    return operation


class FakeHost:
    def __init__(self, metas: list[OperationMeta], data: dict | None) -> None:
        self.op_hash_order = [f"op{i}" for i in range(len(metas))]
        self.data = data or {}
        ops = {
            h: SimpleNamespace(operation_meta=m)
            for h, m in zip(self.op_hash_order, metas, strict=True)
        }
        self.state = SimpleNamespace(ops={self: ops})


def fake_host(metas: list[OperationMeta], data: dict | None = None) -> FakeHost:
    return FakeHost(metas, data)


def test_an_executed_operation_with_commands_is_a_change() -> None:
    assert changed_in_this_run(fake_host([meta(True, 0), meta(True, 2)])) is True


def test_noops_and_operations_not_run_yet_are_not() -> None:
    assert changed_in_this_run(fake_host([meta(True, 0), meta(False, 0)])) is False
    assert changed_in_this_run(fake_host([])) is False


def test_a_failed_operation_is_not_a_change() -> None:
    failed = OperationMeta("h", None)
    failed.set_complete(False, ["cmd"], SimpleNamespace())
    assert changed_in_this_run(fake_host([failed])) is False


def test_deep_is_asked_by_data_or_reconcile_deep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEEP_ENV, raising=False)
    assert deep_requested(fake_host([], {"health": "deep"})) is True
    assert deep_requested(fake_host([], {"health": "light"})) is False
    assert deep_checks(fake_host([meta(True, 1)])) == (
        True, "something changed on this host in this run",
    )  # fmt: skip
    assert deep_checks(fake_host([meta(True, 0)])) == (
        False, "nothing changed on this host in this run; --data health=deep for all checks",
    )  # fmt: skip
    monkeypatch.setenv(DEEP_ENV, "1")
    assert deep_checks(fake_host([])) == (True, "asked for (health=deep)")


def test_the_gpu_container_check_is_not_run_when_nothing_changed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    state = FakeState()
    state.is_executing = True
    host = create_host(state, name="gpu1")
    monkeypatch.setattr(gpu_check, "deep_checks", lambda _host: (False, "nothing changed"))
    host.get_fact = lambda *a, **k: pytest.fail("no docker run when nothing changed")
    with ctx_state.use(state), ctx_host.use(host):
        assert list(gpu_check.gpus_in_container._inner(image="x@sha256:1", gpu_count=2)) == []
    assert host.noop_description == "not run: nothing changed"


def _gpu_check_says(monkeypatch: pytest.MonkeyPatch, fact: dict) -> str:
    state = FakeState()
    state.is_executing = True
    host = create_host(state, name="gpu1")
    monkeypatch.setattr(gpu_check, "deep_checks", lambda _host: (True, "asked"))
    host.get_fact = lambda *a, **k: fact
    with ctx_state.use(state), ctx_host.use(host):
        commands = list(gpu_check.gpus_in_container._inner(image="x@sha256:1", gpu_count=2))
    assert len(commands) == 1
    return commands[0].args[0]  # the message fail_host reports


def test_a_docker_daemon_that_never_came_back_is_named_not_the_toolkit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    down = "docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the "
    said = _gpu_check_says(monkeypatch, {"rc": 125, "lines": [down + "docker daemon running?."]})
    assert "Docker does not answer on this host (waited 60 s)" in said
    assert "systemctl status docker" in said and "toolkit" not in said


def test_too_few_gpus_in_a_container_point_at_the_toolkit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    said = _gpu_check_says(monkeypatch, {"rc": 0, "lines": ["GPU 0: NVIDIA H100 (UUID: GPU-1)"]})
    assert "listed 1 of 2" in said and "Check the container toolkit" in said
