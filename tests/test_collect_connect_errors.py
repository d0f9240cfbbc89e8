"""A host pyinfra cannot connect to gets an error line, but only while connecting: a
reboot's reconnect loop (while operations run) fails to connect on purpose."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tfenv.reconcile.collect import CollectConnectErrors
from tfenv.reconcile.env import OUT_ENV


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_connect_error_before_the_operations_is_the_hosts_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.jsonl"
    monkeypatch.setenv(OUT_ENV, str(out))
    state, host = SimpleNamespace(is_executing=False), SimpleNamespace(name="gpu-01")
    CollectConnectErrors.host_connect_error(state, host, "Authentication error")
    assert lines(out) == [{"host": "gpu-01", "error": "could not connect: Authentication error"}]


def test_a_connect_error_while_operations_run_is_a_reboot_reconnecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.jsonl"
    monkeypatch.setenv(OUT_ENV, str(out))
    state, host = SimpleNamespace(is_executing=True), SimpleNamespace(name="gpu-01")
    CollectConnectErrors.host_connect_error(state, host, "Connection refused")
    assert lines(out) == []
