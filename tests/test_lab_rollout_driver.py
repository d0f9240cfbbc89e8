"""Rolling NVIDIA driver upgrades on a real 5-host lab (lab-10..lab-14, over real SSH).

The hosts are the image rollout tests' (this module runs after them), with an
inventory and group data of their own in a temporary directory, so the
rollout's write of the new version into the group data never touches the
repository. Each lab host is a container: a reboot is its container stopping
and starting, which ``docker events`` records with timestamps. From those the
tests read how many hosts were down at once and how often each one rebooted.

Image: whatever the image rollouts left running (real TensorFlow, nothing pulled
again): the subject is the driver and its reboots, not the image.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab_fixtures import (
    CLOSE_SESSION,
    REPO,
    SESSION,
    canary_inventory,
    ok_on_host,
    on_host,
    one_space_after_host,
)

from tfenv.lab.fleet import Lab

pytestmark = pytest.mark.lab

FIRST = 9  # 0-based: lab-10 .. lab-14, as tests/test_lab_rollout.py
COUNT = 5
OLD, GOOD, BROKEN = "550.127.05", "550.144.03", "550.163.01"
KEPT = "/mnt/checkpoints/driver-kept.bin"
HOME_KEPT = "/var/lib/tfenv/containers/dev/home/driver-notes.txt"

GROUP_DATA = '''\
"""The driver these tests' hosts declare (over group_data/lab.py's)."""

nvidia_driver = {{
    "branch": "550",
    "version": "{version}",  # a tfenv driver rollout writes here when it completes
    "kernel_modules": "open",
    "reboot": "if-needed",
}}
'''


class Fleet:
    def __init__(self, lab: Lab, state, tmp: Path) -> None:
        self.lab, self.state, self.tmp = lab, state, tmp
        self.names = [h.name for h in state.hosts[FIRST : FIRST + COUNT]]
        self.containers = {h.container: h.name for h in state.hosts[FIRST : FIRST + COUNT]}
        self.lock = tmp / "images.lock.yaml"
        self.inventory = tmp / "inventory.py"
        self.group_data = tmp / "group_data" / "lab.py"
        self.state_dir = tmp / "state"
        self.env = {**os.environ, "TFENV_LAB_DIR": str(lab.directory), "PYTHONPATH": str(REPO)}

    def index(self, name: str) -> int:
        return FIRST + self.names.index(name)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-c", "from tfenv.cli import main; main()", *args]

    def rollout(self, *args: str) -> tuple[int, dict, str]:
        result = subprocess.run(
            self.argv("rollout", *args, "--state-dir", str(self.state_dir), "--json"),
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        summary = json.loads(result.stdout) if result.stdout.strip() else {}
        return result.returncode, summary, result.stderr

    def start_args(self, version: str, *args: str) -> list[str]:
        return ["start", str(self.inventory), "--driver", version, "--bake", "0", *args]

    def deploy(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pyinfra", "-y", str(self.inventory), "deploys/tf_node.py"],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip

    def reconcile(self) -> tuple[int, dict, str]:
        result = subprocess.run(
            self.argv("reconcile", str(self.inventory), "--state-dir", str(self.tmp / "rec"),
                      "--json"),
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        return result.returncode, json.loads(result.stdout or "{}"), result.stderr

    def drivers(self) -> dict[str, str]:
        """What nvidia-smi on each host says the driver is (or its error)."""
        return {
            name: on_host(self.state, self.index(name),
                          "nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1",
                          timeout=60).stdout.strip() or "no answer"
            for name in self.names
        }  # fmt: skip

    def healthy(self) -> dict[str, str]:
        return {
            name: on_host(self.state, self.index(name),
                          "sudo docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' dev",
                          timeout=60).stdout.strip()
            for name in self.names
        }  # fmt: skip

    def fingerprints(self) -> dict[str, str]:
        return {
            name: ok_on_host(self.state, self.index(name), f"sudo sha256sum {KEPT} {HOME_KEPT}",
                             timeout=60)
            for name in self.names
        }  # fmt: skip

    def declared(self) -> str:
        return self.group_data.read_text()


class Boots:
    """``docker events`` of the lab hosts' containers while a block runs: each reboot
    is a ``die`` then a ``start`` of one host's container."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def __enter__(self) -> Boots:
        self.since = time.time()
        return self

    def __exit__(self, *_: object) -> None:
        until = time.time() + 1
        out = subprocess.run(
            ["docker", "events", "--since", f"{self.since:.3f}", "--until", f"{until:.3f}",
             "--filter", "type=container", "--filter", "event=die", "--filter", "event=start",
             "--format", "{{json .}}"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        self.events = []
        for line in out.splitlines():
            event = json.loads(line)
            name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
            if name in self.fleet.containers:
                self.events.append((event["timeNano"], self.fleet.containers[name],
                                    event["Action"]))  # fmt: skip
        self.events.sort()

    def reboots(self) -> dict[str, int]:
        counts = dict.fromkeys(self.fleet.names, 0)
        for _, host, action in self.events:
            if action == "start":
                counts[host] += 1
        return counts

    def most_down_at_once(self) -> int:
        down: set[str] = set()
        most = 0
        for _, host, action in self.events:
            if action == "die":
                down.add(host)
            else:
                down.discard(host)
            most = max(most, len(down))
        return most


@pytest.fixture(scope="module")
def fleet(lab_of, test_lab: Lab, tmp_path_factory):
    state = lab_of(FIRST + COUNT, images=True)
    tmp = tmp_path_factory.mktemp("driver")
    fleet = Fleet(test_lab, state, tmp)
    shutil.copyfile(state.lock, fleet.lock)
    fleet.inventory.write_text(
        canary_inventory("the driver rollout tests", fleet.lock, fleet.names)
    )
    fleet.group_data.parent.mkdir()
    fleet.group_data.write_text(GROUP_DATA.format(version=OLD))
    result = fleet.deploy()
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    ok_on_host(state, FIRST, f"sudo sh -c 'head -c 1048576 /dev/urandom > {KEPT}'", timeout=60)
    for name in fleet.names:
        ok_on_host(state, fleet.index(name),
                   "sudo docker exec dev sh -c 'echo my notes > ~/driver-notes.txt'",
                   timeout=60)  # fmt: skip
    fleet.kept = fleet.fingerprints()
    assert set(fleet.drivers().values()) == {OLD}
    return fleet


def test_a_rollout_to_a_good_driver_completes_wave_by_wave(fleet: Fleet) -> None:
    with Boots(fleet) as boots:
        code, summary, stderr = fleet.rollout(*fleet.start_args(
            GOOD, "--waves", "1,100%", "--max-unavailable", "2"))  # fmt: skip
    assert code == 0, stderr
    assert summary["status"] == "completed", stderr
    assert summary["waves"] == [fleet.names[:1], fleet.names[1:]]
    assert "Rollout r-" in stderr and "at most 2 host(s) down at once" in stderr  # the plan
    assert boots.reboots() == dict.fromkeys(fleet.names, 1), boots.events
    assert boots.most_down_at_once() <= 2, boots.events
    assert fleet.drivers() == dict.fromkeys(fleet.names, GOOD)
    assert set(fleet.healthy().values()) == {"running healthy"}
    assert f'"version": "{GOOD}",  # a tfenv driver rollout writes here' in fleet.declared()
    for name in fleet.names:  # the hosts' records of the rollout are gone with it
        assert on_host(fleet.state, fleet.index(name), "test -e /var/lib/tfenv/rollouts/"
                       "driver.json", timeout=60).returncode == 1, name  # fmt: skip
    code, report, rstderr = fleet.reconcile()
    assert code == 0, json.dumps(report, indent=1) + rstderr
    for name in fleet.names:
        gates = summary["hosts"][name]["steps"]["gates"]
        assert gates["state"] == "passed"
        driver = next(g for g in gates["gates"] if g["name"] == "driver")
        assert driver["numbers"] == {"nvidia_smi": GOOD, "module": GOOD, "expected": GOOD}
    assert fleet.fingerprints() == fleet.kept


def test_a_broken_driver_stops_at_the_canary_and_rolls_back(fleet: Fleet) -> None:
    canary = fleet.names[0]
    before = fleet.declared()
    with Boots(fleet) as boots:
        code, summary, stderr = fleet.rollout(*fleet.start_args(
            BROKEN, "--on-failure", "rollback"))  # fmt: skip
    assert code == 1, stderr
    assert summary["status"] == "aborted", stderr
    assert "couldn't communicate with the NVIDIA driver" in stderr, stderr
    # The canary rebooted into the bad driver, then back: twice; nobody else at all.
    assert boots.reboots() == {**dict.fromkeys(fleet.names, 0), canary: 2}, boots.events
    assert fleet.drivers() == dict.fromkeys(fleet.names, GOOD)
    assert set(fleet.healthy().values()) == {"running healthy"}
    assert fleet.declared() == before
    assert fleet.reconcile()[0] == 0
    assert fleet.fingerprints() == fleet.kept


def test_kill_mid_wave_then_resume_reboots_no_host_twice(fleet: Fleet) -> None:
    log = fleet.tmp / "killed.log"
    with Boots(fleet) as boots:
        with open(log, "w") as out:
            run = subprocess.Popen(
                fleet.argv("rollout", *fleet.start_args(OLD, "--waves", "1,100%",
                                                        "--max-unavailable", "2"),
                           "--state-dir", str(fleet.state_dir)),
                cwd=REPO, env=fleet.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 900
            # Killed once wave 2 has moved its first host: in the middle of the wave.
            while f"{fleet.names[1]}: driver {OLD} installed" not in log.read_text():
                assert run.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=60)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
        rollout_id = log.read_text().split("Rollout ", 1)[1].split(":", 1)[0]
        time.sleep(5)  # what the killed run started on the hosts ends (a reboot in flight)
        # Meanwhile: the moved hosts are a rollout in progress, not drift.
        code, report, rstderr = fleet.reconcile()
        assert code == 0, json.dumps(report, indent=1) + rstderr
        for name in fleet.names[:2]:
            assert report["hosts"][name]["status"] == "rollout-in-progress", report["hosts"]
        code, summary, stderr = fleet.rollout("resume", rollout_id, "--inventory",
                                              str(fleet.inventory))  # fmt: skip
    assert code == 0, stderr
    assert summary["status"] == "completed"
    assert boots.reboots() == dict.fromkeys(fleet.names, 1), boots.events
    assert boots.most_down_at_once() <= 2, boots.events
    assert fleet.drivers() == dict.fromkeys(fleet.names, OLD)
    assert f'"version": "{OLD}",' in fleet.declared()
    assert fleet.fingerprints() == fleet.kept


def test_the_plain_deploy_reboots_one_host_at_a_time_and_never_a_busy_one(fleet: Fleet) -> None:
    busy = fleet.names[2]
    fleet.group_data.write_text(GROUP_DATA.format(version=GOOD))
    where = fleet.index(busy)
    ok_on_host(fleet.state, where, "cat > /tmp/dev_key && chmod 600 /tmp/dev_key",
               Path(fleet.state.key).read_text())  # fmt: skip
    ok_on_host(fleet.state, where, "rm -f /tmp/session.out; " + SESSION, timeout=60)
    try:
        with Boots(fleet) as boots:
            result = fleet.deploy()
    finally:
        on_host(fleet.state, where, CLOSE_SESSION, timeout=60)
    output = one_space_after_host(result.stdout + result.stderr)
    assert result.returncode != 0, output[-3000:]
    assert f"[{busy}] Error: driver {GOOD}: nothing changed and the host NOT rebooted" in output
    assert "an SSH session from" in output
    others = [n for n in fleet.names if n != busy]
    assert boots.reboots() == {**dict.fromkeys(others, 1), busy: 0}, f"{boots.events}\n{output}"
    assert boots.most_down_at_once() == 1, boots.events
    drivers = fleet.drivers()
    assert drivers == {**dict.fromkeys(others, GOOD), busy: OLD}
    # Idle now: the next run upgrades it too.
    result = fleet.deploy()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert fleet.drivers() == dict.fromkeys(fleet.names, GOOD)
    assert fleet.fingerprints() == fleet.kept
