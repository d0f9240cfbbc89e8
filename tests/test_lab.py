"""The lab against a real Docker engine: hosts reached over real SSH.

Image: none (the lab hosts themselves: SSH, sudo, no Docker yet).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lab_fixtures import pyinfra_on_lab

from tfenv.lab.fleet import Lab, LabState, down, ssh_command, status, up
from tfenv.lab.run import LabError

pytestmark = pytest.mark.lab


def ssh(
    state: LabState,
    port: int,
    *command: str,
    known_hosts: str | None = None,
    user: str | None = None,
) -> subprocess.CompletedProcess:
    argv = ssh_command(state.key, known_hosts or state.known_hosts, port, user or state.user)
    return subprocess.run(
        [*argv, *command], capture_output=True, text=True, timeout=30, check=False
    )


def test_hosts_answer_ssh_and_sudo_with_strict_checking(lab_of) -> None:
    state = lab_of(3)
    assert len(state.hosts) == 3
    for host in state.hosts:
        result = ssh(
            state,
            host.port,
            "sudo",
            "-n",
            "true",
            "&&",
            "hostname",
            "&&",
            "systemctl",
            "is-system-running",
            "--wait",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [host.name, "running"]


def test_unknown_host_key_is_refused(lab_of, tmp_path: Path) -> None:
    state = lab_of(1)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = ssh(state, state.hosts[0].port, "true", known_hosts=str(empty))
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_docker_is_not_preinstalled(lab_of) -> None:
    state = lab_of(1)
    result = ssh(state, state.hosts[0].port, "command -v docker dockerd || echo none")
    assert result.stdout.strip() == "none"


def test_root_login_is_refused(lab_of) -> None:
    state = lab_of(1)
    result = ssh(state, state.hosts[0].port, "true", user="root")
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_second_up_changes_nothing_and_keeps_host_keys(lab_of, test_lab: Lab) -> None:
    before = lab_of(2)
    known_before = Path(before.known_hosts).read_text()
    ids_before = _container_ids(test_lab)
    again = up(test_lab, len(before.hosts), images=bool(before.lock))
    assert [(h.name, h.port) for h in again.hosts] == [(h.name, h.port) for h in before.hosts]
    assert _container_ids(test_lab) == ids_before
    assert Path(again.known_hosts).read_text() == known_before


def test_status_reports_every_host(lab_of, test_lab: Lab) -> None:
    state = lab_of(2)
    rows = status(test_lab)
    assert [r["host"] for r in rows] == [h.name for h in state.hosts] + ["registry"]
    assert all(r["state"] == "running" and r["answers"] for r in rows)
    assert all(r["memory"] is None or r["memory"] > 0 for r in rows)


def test_pyinfra_reaches_lab_hosts_through_the_lab_inventory(lab_of, test_lab: Lab) -> None:
    state = lab_of(2)
    output = pyinfra_on_lab(test_lab, "exec", "--", "sudo -n true && hostname", timeout=120)
    for host in state.hosts:
        assert f"[{host.name}] {host.name}" in output


def _container_ids(lab: Lab) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={lab.label}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(out.stdout.split())


def _docker_lines(*args: str) -> set[str]:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_down_leaves_nothing_behind(test_lab: Lab, tmp_path: Path) -> None:
    lab = Lab(name="tfenv-test-lab-down", directory=tmp_path / "lab")
    volumes_before = _docker_lines("volume", "ls", "-q")
    networks_before = _docker_lines("network", "ls", "-q")
    # Without the TF images: pushing them again takes minutes; the registry's
    # storage is an anonymous volume either way, removed with its container.
    try:
        state = up(lab, 1, images=False)
        # One host; the registry, the simulated NVIDIA apt repositories and NFS server.
        assert len(_container_ids(lab)) == 4
        assert _docker_lines("volume", "ls", "-q") - volumes_before  # /var/lib/docker volume
    finally:
        down(lab)
    assert _container_ids(lab) == []
    assert _docker_lines("volume", "ls", "-q") == volumes_before
    assert _docker_lines("network", "ls", "-q") == networks_before
    assert not lab.state_file.exists()
    assert state.hosts[0].name == "lab-1"


def test_a_second_checkout_cannot_take_over_a_running_lab(
    lab_of, test_lab: Lab, tmp_path: Path
) -> None:
    lab_of(1)
    intruder = Lab(name=test_lab.name, directory=tmp_path / "other")
    with pytest.raises(LabError, match="already runs with its keys in"):
        up(intruder, 1, images=False)
    assert status(test_lab)[0]["answers"]  # the running lab is untouched
