"""The lab inventory reads the lab's state file: SSH on 127.0.0.1, strict host keys."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from tfenv.lab.fleet import LabHost, LabState
from tfenv.lab.run import LabError

REPO = Path(__file__).resolve().parent.parent


def lab_state(tmp_path: Path) -> LabState:
    return LabState(
        name="tfenv-lab", user="tfenv", key=str(tmp_path / "id_ed25519"),
        known_hosts=str(tmp_path / "known_hosts"), network="tfenv-lab-net",
        hosts=[LabHost("lab-1", "tfenv-lab-1", 40001), LabHost("lab-2", "tfenv-lab-2", 40002)],
    )  # fmt: skip


def test_the_lab_inventory_reaches_each_host_on_its_port_with_strict_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_state(tmp_path).write(tmp_path / "state.json")
    monkeypatch.setenv("TFENV_LAB_DIR", str(tmp_path))
    inventory = runpy.run_path(str(REPO / "inventories" / "lab.py"))
    assert [name for name, _ in inventory["lab"]] == ["lab-1", "lab-2"]
    assert inventory["canary"] == ["lab-1"]
    assert inventory["lab"][1][1] == {
        "ssh_hostname": "127.0.0.1", "ssh_port": 40002, "ssh_user": "tfenv",
        "ssh_key": str(tmp_path / "id_ed25519"),
        "ssh_known_hosts_file": str(tmp_path / "known_hosts"),
        "ssh_strict_host_key_checking": "yes", "_sudo": True,
        "lab_docker_name": "tfenv-lab-2",
    }  # fmt: skip


def test_a_host_the_lab_does_not_have_is_named(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="the lab has no host 'lab-3' \\(it has 2\\)"):
        lab_state(tmp_path).ssh_data("lab-3")


def test_no_lab_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFENV_LAB_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO / "inventories" / "lab.py"))
    assert str(stop.value).startswith("inventories/lab.py: ")
