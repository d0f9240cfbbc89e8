"""tfenv reconcile's pure parts: shards, batches, exit codes, merge, redaction,
errors from pyinfra's output, the timer's units (checked by systemd-analyze)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfenv.model.inventory import validate_hosts
from tfenv.model.problems import SpecError
from tfenv.model.reconcile_timer import load_timer
from tfenv.pyinfra_hooks import _shard_and_gate
from tfenv.reconcile.check import batch_size, host_error, parse_shard, shard_of
from tfenv.reconcile.report import HostResult, Item, Report, merge
from tfenv.reconcile.run import BUSY_COMMAND, _in_use, redact, render_all, summary
from tfenv.reconcile.timer import command, service_unit, timer_unit

DRIFT = Item("containers", "dev.restart", "unless-stopped", "no")
PERSON = Item("undeclared", "stray", "absent (not declared)", "running", "person", "docker rm -f")


def report(**hosts: HostResult) -> Report:
    return Report(inventory="inv.py", started="2026-11-27T02:30:00Z",
                  finished="2026-11-27T02:31:00Z", hosts=hosts)  # fmt: skip


def test_shards_partition_any_fleet_stably() -> None:
    names = [f"gpu-{i:04d}" for i in range(1000)]
    shards = [[n for n in names if shard_of(n, 7) == k] for k in range(1, 8)]
    assert sorted(n for shard in shards for n in shard) == names  # each in exactly one
    assert all(60 < len(s) < 230 for s in shards)  # spread, not all in one
    assert shard_of("gpu-0001", 7) == shard_of("gpu-0001", 7)
    # sha256-based: the same on every machine and Python run (not the salted hash())
    probe = "import sys; from tfenv.reconcile.check import shard_of; print(shard_of('lab-1', 5))"
    other = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123"})  # fmt: skip
    assert int(other.stdout) == shard_of("lab-1", 5)
    assert [shard_of("a", 1), shard_of("b", 1)] == [1, 1]


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "1", "1/3/2", " 1/3", "\u0661/3"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)


def test_batches() -> None:
    assert batch_size(None, 3) == 1  # 10% of 3, at least 1
    assert batch_size(None, 250) == 25
    assert batch_size("25%", 10) == 3  # rounds up
    assert batch_size("4", 100) == 4
    for bad in ("0", "0%", "101%", "-1", "ten", "5 %"):
        with pytest.raises(ValueError, match="--batch"):
            batch_size(bad, 10)


def test_exit_codes_never_0_with_an_unchecked_host() -> None:
    clean = HostResult("a", checked=True)
    assert report(a=clean).exit_code == 0
    assert report(a=clean, b=HostResult("b", True, items=[DRIFT])).exit_code == 2
    down = HostResult("c", checked=False, error="could not connect")
    assert report(a=clean, c=down).exit_code == 1
    assert report(b=HostResult("b", True, items=[DRIFT]), c=down).exit_code == 1
    assert HostResult("b", True, items=[DRIFT, PERSON]).status == "needs-a-person"
    assert HostResult("b", True, items=[PERSON]).area_status("containers") == "clean"


def test_merge_joins_shards_and_refuses_overlaps() -> None:
    one = report(a=HostResult("a", True))
    two = report(b=HostResult("b", True, items=[DRIFT]))
    one.shard, two.shard = "1/2", "2/2"
    merged = merge([one, two])
    assert sorted(merged.hosts) == ["a", "b"] and merged.exit_code == 2
    assert Report.from_json(merged.to_json()).to_json() == merged.to_json()
    with pytest.raises(ValueError, match="host a is in two reports"):
        merge([one, one])
    with pytest.raises(ValueError, match=r"not a tfenv\.reconcile/1 report"):
        Report.from_json({"schema": "other"})


def test_reports_never_hold_a_secret_value() -> None:
    leaky = Item("containers", "dev.env: TOKEN", "s3cr3t-value", "(unset)")
    texts = render_all(report(a=HostResult("a", True, items=[leaky])), ["s3cr3t-value", "ab"])
    for name, text in texts.items():
        assert "s3cr3t-value" not in text, name
    assert "(redacted)" in texts["report.json"] and "(redacted)" in texts["report.html"]
    assert redact("x ab y", ["ab"]) == "x ab y"  # too short to be told from text


def test_a_container_the_deploy_held_off_needs_a_person() -> None:
    held = _in_use(DRIFT)
    assert (held.action, held.command) == ("person", BUSY_COMMAND)
    assert _in_use(PERSON) == PERSON
    nfs = Item("nfs", "x", "a", "b")
    assert _in_use(nfs) == nfs


def test_summary_and_host_errors() -> None:
    down = HostResult("c", checked=False, error="could not connect: refused")
    text = summary(report(b=HostResult("b", True, items=[DRIFT, PERSON]), c=down))
    assert "c: NOT CHECKED: could not connect: refused" in text
    assert "containers dev.restart: declared unless-stopped, observed no" in text
    assert "needs a person: docker rm -f" in text
    assert text.endswith("exit 1")
    output = "[lab-1] Connected\n[lab-2] Could not connect (Connection refused)\n"
    assert host_error(output, "lab-2", 1) == "Could not connect (Connection refused)"
    assert "before it finished checking" in host_error(output, "lab-3", 1)


TIMER = {"inventory": "inventories/gpu.py", "workdir": "/opt/fleet"}


def test_the_timer_units() -> None:
    spec = load_timer("ctl", {**TIMER, "apply": True, "shard": "2/4"})
    assert command(spec) == (
        "/opt/tfenv/bin/tfenv reconcile inventories/gpu.py --quiet "
        "--report-dir /var/lib/tfenv-reconcile/reports --apply --shard 2/4"
    )
    service, timer = service_unit(spec), timer_unit(spec)
    assert "User=tfenv-reconcile" in service and "Type=oneshot" in service
    assert "SuccessExitStatus=2" in service
    assert "Persistent=true" in timer and "RandomizedDelaySec=15min" in timer


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**TIMER, "schedule": "daily; rm -rf /"}, "reconcile.schedule"),
        ({**TIMER, "inventory": "../x.py"}, "reconcile.inventory"),
        ({**TIMER, "inventory": "/abs/x.py"}, "reconcile.inventory"),
        ({**TIMER, "workdir": "/opt/my fleet"}, "reconcile.workdir"),
        ({**TIMER, "user": "Root"}, "reconcile.user"),
        ({**TIMER, "shard": "0/4"}, "reconcile.shard"),
        ({**TIMER, "typo": 1}, "reconcile.typo"),
        ({"workdir": "/opt/fleet"}, "reconcile.inventory"),
    ],
)
def test_bad_timer_data_names_the_field(data: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_timer("ctl", data)
    assert [p.field for p in caught.value.problems] == [field]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    spec = load_timer("ctl", {**TIMER, "tfenv": "/bin/true", "workdir": "/"})
    (tmp_path / "tfenv-reconcile.service").write_text(service_unit(spec))
    (tmp_path / "tfenv-reconcile.timer").write_text(timer_unit(spec))
    calendar = subprocess.run(["systemd-analyze", "calendar", spec.schedule],
                              capture_output=True, text=True, check=False)  # fmt: skip
    assert calendar.returncode == 0, calendar.stderr
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "tfenv-reconcile.timer")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    problems = [line for line in verify.stderr.splitlines()
                if "tfenv-reconcile" in line and "User" not in line]  # fmt: skip
    assert problems == [], verify.stderr


# Run in a fresh interpreter, as tfenv reconcile starts its gated run (before pyinfra,
# and with it gevent's patching, is imported): for each byte string sent down the
# gate (None: the pipe closed unwritten), the run's exit code and stdout/stderr.
GATE_CASES = r"""
import json, os, subprocess, sys
probe = "from tfenv.pyinfra_hooks import wait_for_go; wait_for_go(); print('connects')"
results = []
for written in (None, b"go", b"stop", b"g"):
    read_end, write_end = os.pipe()
    env = {**os.environ, "TFENV_RECONCILE_GATE": "0"}  # its stdin, as tfenv reconcile does
    child = subprocess.Popen([sys.executable, "-c", probe], env=env, stdin=read_end,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(read_end)
    if written is not None:
        os.write(write_end, written)
    os.close(write_end)
    out, err = child.communicate(timeout=60)
    results.append([written and written.decode(), child.returncode, out, err[-300:]])
print(json.dumps(results))
"""


def test_a_gated_run_connects_only_after_go() -> None:
    plain = subprocess.run([sys.executable, "-c", "from tfenv.pyinfra_hooks import wait_for_go; "
                            "wait_for_go(); print('connects')"], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items()
                                if k != "TFENV_RECONCILE_GATE"}, timeout=60)  # fmt: skip
    assert plain.stdout == "connects\n"  # not gated: a plain pyinfra run goes on
    ran = subprocess.run([sys.executable, "-c", GATE_CASES], capture_output=True, text=True,
                         timeout=300, check=True)  # fmt: skip
    results = {written: (code, out, err) for written, code, out, err in json.loads(ran.stdout)}
    assert results["go"][:2] == (0, "connects\n")
    for written in (None, "stop", "g"):  # None: tfenv died before it said anything
        code, out, err = results[written]
        assert code != 0 and out == "", (written, err)
        assert "stopped this run before it connected" in err


def test_a_sharded_run_targets_its_shard_within_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    fleet = [Named(f"gpu-{i}") for i in range(30)]
    seen: list = []
    init = _shard_and_gate(lambda inventory, config, initial_limit=None: seen.append(initial_limit))
    monkeypatch.setenv("TFENV_RECONCILE_SHARD", "2/3")
    init(fleet, None)
    init(fleet, None, initial_limit=fleet[:10])
    assert [h.name for h in seen[0]] == [h.name for h in fleet if shard_of(h.name, 3) == 2]
    assert [h.name for h in seen[1]] == [h.name for h in fleet[:10] if shard_of(h.name, 3) == 2]
    monkeypatch.delenv("TFENV_RECONCILE_SHARD")
    init(fleet, None)
    assert seen[2] is None  # not sharded: pyinfra's own limit, untouched


def test_tfenv_validate_checks_the_reconcile_section_too(tmp_path: Path) -> None:
    class Data:
        def __init__(self, values: dict) -> None:
            self.values = values

        def dict(self) -> dict:
            return self.values

    class Host:
        def __init__(self, name: str, values: dict) -> None:
            self.name, self.data = name, Data(values)

    good = Host("ctl-1", {"reconcile": TIMER})
    bad = Host("ctl-2", {"reconcile": {**TIMER, "schedule": "daily; reboot"}})
    specs, problems = validate_hosts([good, bad], tmp_path)
    assert sorted(specs) == ["ctl-1", "ctl-2"]  # nothing else declared: valid nodes
    assert [(p.host, p.field) for p in problems] == [("ctl-2", "reconcile.schedule")]


def test_a_host_failure_is_found_whatever_pyinfra_pads_its_name_with() -> None:
    """pyinfra pads ``[NAME]`` to the inventory's longest host name."""
    from tfenv.reconcile.check import host_failed

    output = "    [lab-5]  Error: executed 0 commands\n    [lab-10] Success\n"
    assert host_failed(output, "lab-5")
    assert not host_failed(output, "lab-10")
    assert host_failed("[gpu-1]    Could not connect (timed out)\n", "gpu-1")
    assert not host_failed("[gpu-11] Error: x\n", "gpu-1")  # another host's name


def test_an_exclusive_lock_is_held_once_and_names_its_holder(tmp_path: Path) -> None:
    from tfenv.reconcile.files import hold_exclusive

    first, holder = hold_exclusive(tmp_path / "run.lock")
    assert first is not None and holder == ""
    second, holder = hold_exclusive(tmp_path / "run.lock")
    assert second is None and holder == f"pid {os.getpid()}"
    first.close()  # released: the next one takes it
    third, holder = hold_exclusive(tmp_path / "run.lock")
    assert third is not None and holder == ""
    third.close()
