"""tfenv rollout on a real 5-host lab (lab-10..lab-14, over real SSH), canary group = lab-10.

One module fixture provisions the five hosts with tf_node through an inventory
of their own (a copy of the lab lock, so a completed rollout's lock change
stays in this module) and writes a researcher's files. Then each case of the
issue, in order: lab1 -> lab2 to completion; lab3-broken paused at the canary
(the deploy and reconcile --apply leave it, a person rolls back) and rolled
back without a person; lab4-slow and lab5-drift stopped on the p99 and the KL
gates; kill -9 mid-wave then resume (a second start refused meanwhile); a host
stopped mid-rollout (paused, then resumed). The researcher's files are checked
after every case.

Image: the lab TF releases, real TensorFlow: an image rollout is the subject, and
lab5-drift runs tfenv's own probe (a TF model). The other gate cases read scripted
metrics, so no timing decides them.
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
    REPO,
    SCRIPTED_PROBE,
    canary_inventory,
    install_scripted_probe,
    ok_on_host,
    start_host_again,
)

from tfenv.images.lock import read_lock
from tfenv.lab.fleet import Lab
from tfenv.rollout.journal import ACTIVE, Journal

pytestmark = pytest.mark.lab

FIRST = 9  # 0-based: lab-10 .. lab-14 (other modules use the hosts before them)
COUNT = 5
REPOSITORY = "registry.lab.test:5000/tfenv/tensorflow"
LAB = {n: f"{REPOSITORY}:2.17.1-lab{n}" for n in (1, 2)}
BROKEN, SLOW, DRIFT = (f"{REPOSITORY}:2.17.1-{t}" for t in ("lab3-broken", "lab4-slow",
                                                             "lab5-drift"))  # fmt: skip
KEPT = "/mnt/checkpoints/rollout-kept.bin"
HOME_KEPT = "/var/lib/tfenv/containers/dev/home/rollout-notes.txt"


class Fleet:
    def __init__(self, lab: Lab, state, tmp: Path) -> None:
        self.lab, self.state, self.tmp = lab, state, tmp
        self.names = [h.name for h in state.hosts[FIRST : FIRST + COUNT]]
        self.lock = tmp / "images.lock.yaml"
        self.inventory = tmp / "inventory.py"  # scripted canary readings
        self.own_probe_inventory = tmp / "inventory-own-probe.py"  # tfenv's probe, real TF
        self.state_dir = tmp / "state"
        self.env = {**os.environ, "TFENV_LAB_DIR": str(lab.directory), "PYTHONPATH": str(REPO)}

    def index(self, name: str) -> int:
        return FIRST + self.names.index(name)

    def pinned(self, reference: str) -> str:
        lock, issues = read_lock(self.lock)
        assert not issues, issues
        image = lock.images[reference]
        return image.pinned

    def tfenv(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", "from tfenv.cli import main; main()", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def rollout(self, *args: str, state_dir: Path | None = None) -> tuple[int, dict, str]:
        """``tfenv rollout ARGS --state-dir ... --json``: (exit code, summary, stderr)."""
        result = self.tfenv("rollout", *args, "--state-dir", str(state_dir or self.state_dir),
                            "--json")  # fmt: skip
        try:
            summary = json.loads(result.stdout) if result.stdout.strip() else {}
        except json.JSONDecodeError:
            pytest.fail(f"not JSON on stdout:\n{result.stdout}\n{result.stderr}")
        return result.returncode, summary, result.stderr

    def start(self, to: str, *args: str, inventory: Path | None = None) -> tuple[int, dict, str]:
        # The lab's hosts share this machine's CPUs: measured one at a time.
        return self.rollout("start", str(inventory or self.inventory), "--container", "dev",
                            "--to", to, "--bake", "0", "--probe-parallel", "1", *args)  # fmt: skip

    def reconcile(self, *args: str) -> tuple[int, dict, str]:
        result = self.tfenv("reconcile", str(self.inventory), "--state-dir",
                            str(self.tmp / "reconcile"), "--json", *args)  # fmt: skip
        return result.returncode, json.loads(result.stdout or "{}"), result.stderr

    def deploy(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pyinfra", "-y", str(self.inventory), "deploys/tf_node.py"],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip

    def images(self) -> dict[str, str]:
        """Each host's dev container: the image it was created from."""
        return {
            name: ok_on_host(self.state, self.index(name),
                             "sudo docker inspect -f '{{.Config.Image}}' dev", timeout=60).strip()
            for name in self.names
        }  # fmt: skip

    def fingerprints(self) -> dict[str, str]:
        """sha256 of a file on the checkpoint mount and one in each host's home directory."""
        return {
            name: ok_on_host(
                self.state, self.index(name), f"sudo sha256sum {KEPT} {HOME_KEPT}", timeout=60
            )
            for name in self.names
        }

    def audit(self) -> list[dict]:
        path = self.state_dir / "rollout-audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def fleet(lab_of, test_lab: Lab, tmp_path_factory):
    state = lab_of(FIRST + COUNT, images=True)
    tmp = tmp_path_factory.mktemp("rollout")
    fleet = Fleet(test_lab, state, tmp)
    shutil.copyfile(state.lock, fleet.lock)  # this module's lock: the lab's stays as it is
    # Fresh hosts reboot into the driver all at once (the deploy's default is one at a time).
    # The gates read scripted metrics (no timing noise decides a case); one case reads
    # tfenv's own probe (real TensorFlow) through an inventory of its own.
    install_scripted_probe(test_lab)
    fleet.inventory.write_text(
        canary_inventory(
            "the rollout tests", fleet.lock, fleet.names, len(fleet.names), SCRIPTED_PROBE
        )
    )
    fleet.own_probe_inventory.write_text(
        canary_inventory("the rollout tests (tfenv's own probe)", fleet.lock, fleet.names)
    )
    result = fleet.deploy()
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    first = fleet.index(fleet.names[0])
    ok_on_host(state, first, f"sudo sh -c 'head -c 1048576 /dev/urandom > {KEPT}'", timeout=60)
    for name in fleet.names:
        ok_on_host(state, fleet.index(name),
                   "sudo docker exec dev sh -c 'echo my notes > ~/rollout-notes.txt'",
                   timeout=60)  # fmt: skip
    fleet.kept = fleet.fingerprints()
    assert set(fleet.images().values()) == {fleet.pinned(LAB[1])}
    return fleet


@pytest.fixture(autouse=True)
def no_rollout_left_behind(fleet: Fleet):  # type: ignore[no-untyped-def]
    """A case that fails part-way leaves its rollout unfinished, and every later case
    would be refused ("not finished"): roll it back, so one failure stays one."""
    yield
    if not fleet.state_dir.exists():
        return
    journal = Journal(fleet.state_dir)
    try:
        left = [r.id for r in journal.all() if r.status in ACTIVE]
    finally:
        journal.close()
    for rollout_id in left:
        code, _, stderr = fleet.rollout("rollback", rollout_id)
        assert code == 0, f"could not roll back {rollout_id} left by this case: {stderr}"


def test_bad_input_is_refused_before_any_host(fleet: Fleet) -> None:
    code, _, stderr = fleet.start(LAB[2], "--waves", "1,50%")
    assert code == 3 and "covers 3 of 5" in stderr, stderr
    code, _, stderr = fleet.start(f"{REPOSITORY}:no-such-tag")
    assert code == 3 and "could not be resolved" in stderr, stderr
    code, _, stderr = fleet.rollout("start", str(fleet.inventory), "--container", "nope",
                                    "--to", LAB[2])  # fmt: skip
    assert code == 3 and "declares a container nope" in stderr, stderr
    assert not (fleet.state_dir / "rollout-audit.jsonl").exists()


def test_lab1_to_lab2_completes_wave_by_wave(fleet: Fleet) -> None:
    lock_before = read_lock(fleet.lock)[0]
    code, summary, stderr = fleet.start(LAB[2])
    assert code == 0, stderr
    assert summary["status"] == "completed"
    # The canary first, then one host per wave (1, 10%, 30%, 50%, 100% of 5 hosts).
    assert summary["waves"] == [[name] for name in fleet.names]
    assert "Rollout r-" in stderr and "wave 1: lab-10 (canary" in stderr  # the plan
    target = fleet.pinned(LAB[2])
    assert set(fleet.images().values()) == {target}
    lock = read_lock(fleet.lock)[0]
    assert lock.resolve(LAB[1]).pinned == target  # the lock holds lab2 now
    assert lock.promoted[LAB[1]].rollout == summary["id"]
    assert lock_before.promoted == {}
    code, report, rstderr = fleet.reconcile()
    assert code == 0, json.dumps(report, indent=1) + rstderr
    events = [e for e in fleet.audit() if e["rollout"] == summary["id"]]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "completed", kinds
    for name in fleet.names:
        mine = [e for e in events if e.get("host") == name]
        assert [e["event"] for e in mine] == ["replaced", "gates"], mine
        assert mine[1]["decision"] == "passed"
        numbers = {g["name"]: g["numbers"] for g in mine[1]["gates"]}
        assert numbers["p99"]["baseline_ms"] > 0 and numbers["p99"]["new_ms"] > 0
        assert "kl" in numbers["kl-divergence"]
    assert fleet.fingerprints() == fleet.kept


def test_broken_image_pauses_at_the_canary_and_a_person_rolls_back(fleet: Fleet) -> None:
    lock_text = fleet.lock.read_text()
    lab2 = fleet.pinned(LAB[2])
    code, summary, stderr = fleet.start(BROKEN)
    assert code == 1, stderr
    assert summary["status"] == "paused" and "tensorflow-op" in summary["reason"], summary
    assert "tensorflow-op: FAIL" in stderr and f"tfenv rollout rollback {summary['id']}" in stderr
    canary, others = fleet.names[0], fleet.names[1:]
    broken = fleet.pinned(BROKEN)
    assert fleet.images() == {canary: broken, **{n: lab2 for n in others}}
    assert fleet.lock.read_text() == lock_text

    # While it is paused, neither the deploy nor reconcile --apply moves any host.
    fleet.deploy()  # the canary's health check fails (its image is broken): that is reported
    assert fleet.images() == {canary: broken, **{n: lab2 for n in others}}
    code, report, rstderr = fleet.reconcile()
    assert code == 0, rstderr
    assert report["hosts"][canary]["status"] == "rollout-in-progress", report["hosts"][canary]
    assert report["hosts"][canary]["items"][0]["command"] == f"tfenv rollout status {summary['id']}"
    fleet.reconcile("--apply")
    assert fleet.images() == {canary: broken, **{n: lab2 for n in others}}

    # Another control machine, with the inventory but not the journal: the hosts tell.
    inventory = str(fleet.inventory)
    code, seen, stderr = fleet.rollout("status", summary["id"], "--inventory", inventory,
                                       state_dir=fleet.tmp / "third")  # fmt: skip
    assert code == 0 and "rebuilt from the hosts: 1 moved container(s)" in stderr, stderr
    assert seen["to_image"] == broken and seen["waves"] == summary["waves"]
    code, back, stderr = fleet.rollout("rollback", summary["id"], "--inventory", inventory,
                                       state_dir=fleet.tmp / "other")  # fmt: skip
    assert code == 0, stderr
    assert back["status"] == "aborted"
    assert set(fleet.images().values()) == {lab2}
    # This machine's journal still says paused: its rollback finds nothing left to move.
    code, back, stderr = fleet.rollout("rollback", summary["id"])
    assert code == 0 and back["status"] == "aborted", stderr
    assert "rolled back (0 host(s))" in stderr
    assert fleet.lock.read_text() == lock_text
    assert fleet.reconcile()[0] == 0
    assert fleet.fingerprints() == fleet.kept


def test_broken_image_is_rolled_back_without_a_person(fleet: Fleet) -> None:
    lock_text = fleet.lock.read_text()
    before = fleet.images()
    code, summary, stderr = fleet.start(BROKEN, "--on-failure", "rollback")
    assert code == 1, stderr
    assert summary["status"] == "aborted", summary
    assert "tensorflow-op: FAIL" in stderr
    assert fleet.images() == before  # every host back on what it ran
    assert fleet.lock.read_text() == lock_text
    steps = summary["hosts"][fleet.names[0]]["steps"]
    assert steps["rollback-gates"]["state"] == "passed"
    assert set(summary["hosts"]) == {fleet.names[0]}  # the others were never touched
    assert fleet.fingerprints() == fleet.kept


@pytest.mark.parametrize(("image", "gate"), [(SLOW, "p99"), (DRIFT, "kl")],
                         ids=["lab4-slow", "lab5-drift"])  # fmt: skip
def test_a_regression_stops_at_the_canary_on_its_gate(fleet: Fleet, image: str, gate: str) -> None:
    """lab4-slow on scripted readings (its p99 x100: the decision is fixed, no timing
    decides it); lab5-drift on tfenv's own probe, real TensorFlow: its outputs drift,
    which the KL gate sees whatever the CPUs do (its p99 gate is not asserted here)."""
    lock_text = fleet.lock.read_text()
    before = fleet.images()  # lab2 after the cases above; lab1 when run alone
    own_probe = gate == "kl"
    inventory = fleet.own_probe_inventory if own_probe else fleet.inventory
    code, summary, stderr = fleet.start(image, "--on-failure", "rollback", inventory=inventory)
    assert code == 1, stderr
    failed = [line for line in stderr.splitlines() if f"{gate}" in line and "FAIL" in line]
    assert failed, stderr
    gates = summary["hosts"][fleet.names[0]]["steps"]["gates"]["gates"]
    found = {g["name"]: g for g in gates}
    name = "p99" if gate == "p99" else "kl-divergence"
    assert found[name]["passed"] is False, found
    health = [g for g in gates if g["passed"] is False and g["name"] not in ("p99", name)]
    assert health == [], health  # healthy: only the metric gate fails
    if gate == "p99":  # both numbers, new (at the baseline's CPU speed: the lab's data)
        numbers = found["p99"]["numbers"]  # against the baseline
        assert (numbers["baseline_ms"], numbers["new_ms"]) == (3.0, 300.0)  # scripted
        compared = numbers["new_at_baseline_cpu_ms"]
        assert compared > numbers["baseline_ms"] * numbers["factor"]
        assert numbers["cpu_ms_new"] > 0 and numbers["cpu_ms_baseline"] > 0
        assert f"{compared:.2f} ms at the baseline's CPU speed ({numbers['new_ms']:.2f} ms " \
               f"measured" in stderr  # fmt: skip
        assert f"vs baseline {numbers['baseline_ms']:.2f} ms" in stderr
    else:
        assert found[name]["numbers"]["kl"] > found[name]["numbers"]["limit"]
        assert f"{found[name]['numbers']['kl']:.4f} (limit" in stderr
        # tfenv's own probe measured both sides (real numbers, not the scripted ones)
        p99 = found["p99"]["numbers"]
        assert p99["baseline_ms"] > 0 and p99["new_ms"] > 0 and p99["cpu_ms_baseline"] > 0
        assert (p99["baseline_ms"], p99["new_ms"]) != (3.0, 3.0)
    assert summary["status"] == "aborted"
    assert fleet.images() == before  # every host back on what it ran
    assert fleet.lock.read_text() == lock_text
    assert fleet.fingerprints() == fleet.kept


def _the_other_release(fleet: Fleet) -> str:
    """lab1 or lab2: whichever the hosts do not run now (a test on its own, or after
    another, has something to roll out)."""
    running = set(fleet.images().values())
    return LAB[1] if running == {fleet.pinned(LAB[2])} else LAB[2]


def _creates_since(fleet: Fleet, name: str, since: str) -> int:
    until = ok_on_host(fleet.state, fleet.index(name), "date +%s.%N", timeout=60).strip()
    out = ok_on_host(fleet.state, fleet.index(name), (
        f"sudo docker events --since {since} --until {until} --filter type=container "
        "--filter event=create --format '{{.Actor.Attributes.name}}'"), timeout=60)  # fmt: skip
    return sum(1 for line in out.splitlines() if line.strip() == "dev")


def test_kill_9_mid_wave_then_resume_replaces_no_host_twice(fleet: Fleet) -> None:
    target = _the_other_release(fleet)
    since = {n: ok_on_host(fleet.state, fleet.index(n), "date +%s.%N", timeout=60).strip()
             for n in fleet.names}  # fmt: skip
    argv = [sys.executable, "-c", "from tfenv.cli import main; main()", "rollout", "start",
            str(fleet.inventory), "--container", "dev", "--to", target, "--bake", "0",
            "--probe-parallel", "1", "--state-dir", str(fleet.state_dir)]  # fmt: skip
    tool = subprocess.Popen(argv, cwd=REPO, env=fleet.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = len(fleet.audit())
    deadline = time.monotonic() + 600
    rollout_id = None
    while time.monotonic() < deadline:  # until wave 2's host has been replaced
        new = fleet.audit()[seen:]
        rollout_id = next((e["rollout"] for e in new if e["event"] == "start"), rollout_id)
        if any(e["event"] == "replaced" and e.get("host") == fleet.names[1] for e in new):
            break
        assert tool.poll() is None, tool.communicate()
        time.sleep(0.5)
    else:
        pytest.fail("wave 2 never started")
    # A second start while it runs: refused, naming the running rollout, on this
    # control machine (the journal) and on another one (the lock on the canary).
    code, _, stderr = fleet.start(SLOW)
    assert code == 3 and rollout_id in stderr, stderr
    code, _, stderr = fleet.rollout("start", str(fleet.inventory), "--container", "dev",
                                    "--to", SLOW, state_dir=fleet.tmp / "elsewhere")  # fmt: skip
    assert code == 3 and f"holds the lock on {fleet.names[0]}" in stderr, stderr
    assert rollout_id in stderr
    tool.send_signal(signal.SIGKILL)
    tool.communicate()
    code, summary, stderr = fleet.rollout("resume", rollout_id)
    assert code == 0, stderr
    assert summary["status"] == "completed"
    moved = fleet.pinned(target)
    assert set(fleet.images().values()) == {moved}
    for name in fleet.names:
        assert _creates_since(fleet, name, since[name]) == 1, name  # replaced exactly once
    lock = read_lock(fleet.lock)[0]
    assert lock.resolve(LAB[1]).pinned == moved
    # Back to lab1, what the data declares: nothing promoted any more.
    assert (LAB[1] in lock.promoted) == (target == LAB[2])
    assert fleet.reconcile()[0] == 0
    assert fleet.fingerprints() == fleet.kept


def test_confirm_waits_for_promote_and_a_stopped_host_pauses_until_resumed(
    fleet: Fleet,
) -> None:
    target = _the_other_release(fleet)
    before = fleet.images()
    code, summary, stderr = fleet.start(target, "--waves", "1,100%", "--confirm")
    assert code == 0, stderr
    assert summary["status"] == "waiting" and f"tfenv rollout promote {summary['id']}" in stderr
    canary = fleet.names[0]
    assert fleet.images() == {**before, canary: fleet.pinned(target)}  # wave 1 only
    # A host of the next wave goes down: promote starts wave 2, which pauses on it.
    down = fleet.state.hosts[fleet.index(fleet.names[-1])]
    subprocess.run(["docker", "stop", "-t", "0", down.container], check=True, capture_output=True)
    try:
        code, summary, stderr = fleet.rollout("promote", summary["id"])
    finally:
        start_host_again(fleet.lab, fleet.state, fleet.index(down.name))
    assert code == 2, stderr
    assert summary["status"] == "paused" and down.name in summary["reason"], summary
    assert "inconclusive" in summary["reason"]
    assert fleet.images() == {**before, canary: fleet.pinned(target)}  # nothing else moved
    code, summary, stderr = fleet.rollout("resume", summary["id"])
    assert code == 0, stderr
    assert summary["status"] == "completed"
    assert set(fleet.images().values()) == {fleet.pinned(target)}
    assert fleet.reconcile()[0] == 0
    assert fleet.fingerprints() == fleet.kept
    history = fleet.tfenv("rollout", "history", summary["id"], "--state-dir",
                          str(fleet.state_dir))  # fmt: skip
    assert history.returncode == 0, history.stderr
    for event in ("waiting", "promote", "paused", "resume", "completed"):
        assert f" {event} " in history.stdout, history.stdout
