"""tfenv rollout's decisions (tfenv.rollout.run: Controller, rebuild) against a scripted
fleet: every pyinfra run of deploys/rollout.py (``Controller._phase``) is answered by
an in-memory fake that holds each host's container (image, rollout labels), its
reachability, the rollout lock files and what the probes read per image. The
journal, the audit log and the image lock file are real files in tmp_path."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tfenv import layout
from tfenv.images.lock import LockedImage, Promotion, dump_lock, read_lock
from tfenv.layout import ROLLOUT_FROM_LABEL, ROLLOUT_ID_LABEL, ROLLOUT_LABELS, ROLLOUT_TO_LABEL
from tfenv.model.spec import CanaryGates
from tfenv.rollout import run
from tfenv.rollout.env import LOCK_HELD
from tfenv.rollout.journal import Journal, Rollout
from tfenv.rollout.run import (
    EXIT_DONE,
    EXIT_FAILED,
    EXIT_PAUSED,
    Controller,
    RolloutError,
    rebuild,
)

ROLLOUT_ID = "r-20261127-101500-1a2b"
OTHER_ID = "r-20261127-090000-9f9f"
CONTAINER = "dev"
INVENTORY = "inventories/gpu.py"
NAME = "registry.test:5000/ml/tf"
OLD_REF, NEW_REF, BROKEN_REF = f"{NAME}:2.17.0", f"{NAME}:2.18.0", f"{NAME}:2.18.1"
DIGEST_OLD, DIGEST_NEW, DIGEST_BROKEN = ("sha256:" + c * 64 for c in "acd")
OLD_IMAGE, NEW_IMAGE, BROKEN_IMAGE = (
    f"{NAME}@{d}" for d in (DIGEST_OLD, DIGEST_NEW, DIGEST_BROKEN)
)
LOCK_FILE = layout.rollout_lock(CONTAINER)  # the rollout lock on the canary host
IMPORT_ERROR = "ImportError: libcudnn.so.9: cannot open shared object file"
BUSY = "replacement pending for container(s) in use: dev (1 SSH session)"
TRACEBACK = "Traceback (most recent call last):"
HEALTHY = {"sshd": "ok", "jupyter": "ok", "gpus": 2, "tensorflow": "ok"}
OLD_METRICS = {"p50_ms": 10.0, "p99_ms": 20.0, "errors": 0, "inferences": 500,
               "gpu_memory_mib": 1000.0, "outputs": [0.7, 0.2, 0.1]}  # fmt: skip
NEW_METRICS = {"p50_ms": 9.5, "p99_ms": 21.0, "errors": 0, "inferences": 500,
               "gpu_memory_mib": 1050.0, "outputs": [0.69, 0.21, 0.1]}  # fmt: skip
HEALTH_GATES = ["image", "running-healthy", "sshd", "jupyter", "gpus", "tensorflow-op",
                "checkpoints-writable", "log-clean"]  # fmt: skip
METRIC_GATES = ["error-rate", "p99", "kl-divergence", "gpu-memory"]
MOVED_LABELS = {ROLLOUT_ID_LABEL: ROLLOUT_ID, ROLLOUT_TO_LABEL: NEW_IMAGE,
                ROLLOUT_FROM_LABEL: OLD_IMAGE}  # fmt: skip


# --- the fake fleet ---------------------------------------------------------------------


@dataclass
class FakeHost:
    image: str = OLD_IMAGE
    labels: dict[str, str] = field(default_factory=dict)
    reachable: bool = True
    state: str = "running healthy"
    log_lines: list[str] = field(default_factory=list)
    measures: bool = True
    metrics: dict[str, dict] = field(default_factory=dict)  # image -> this host's own numbers
    readings: list[dict] = field(default_factory=list)  # the next checks' numbers, in turn
    locks: dict[str, str] = field(default_factory=dict)  # rollout lock files: path -> text
    replacements: list[str] = field(default_factory=list)  # every image it was moved to


class Fleet:
    """Answers ``Controller._phase`` as the pyinfra runs of deploys/rollout.py would."""

    def __init__(self, lock_path: Path, names: list[str]) -> None:
        self.lock_path = lock_path
        self.hosts = {name: FakeHost() for name in names}
        self.metrics = {OLD_IMAGE: OLD_METRICS, NEW_IMAGE: NEW_METRICS,
                        BROKEN_IMAGE: {"error": IMPORT_ERROR}}  # fmt: skip
        self.health = {OLD_IMAGE: HEALTHY, NEW_IMAGE: HEALTHY,
                       BROKEN_IMAGE: {**HEALTHY, "tensorflow": IMPORT_ERROR}}  # fmt: skip
        self.replace_answers: dict[str, dict] = {}  # host -> its scripted replace outcome
        self.crash: tuple[str, str] | None = None  # (phase, host): KeyboardInterrupt, once
        self.calls: list[tuple[str, list[str], dict]] = []

    def phases(self) -> list[tuple[str, list[str]]]:
        return [(phase, hosts) for phase, hosts, _ in self.calls]

    def answer(self, container: str, phase: str, hosts: dict[str, dict], dry: bool,
               extra: dict) -> dict:  # fmt: skip
        if not hosts:
            return {}  # as Controller._phase: no pyinfra run for no host
        assert dry is (phase in ("observe", "check", "find")), phase
        self.calls.append((phase, sorted(hosts), json.loads(json.dumps(hosts))))
        results: dict[str, dict] = {}
        for name, mine in hosts.items():
            host = self.hosts[name]
            if not host.reachable:
                results[name] = {"error": "could not connect"}
            elif phase in ("observe", "check"):
                results[name] = self.read(name, host, mine)
            elif phase == "replace":
                if name in self.replace_answers:
                    results[name] = self.replace_answers[name]
                    continue
                host.image, host.labels = mine["image"], dict(mine["labels"])
                host.replacements.append(mine["image"])
            elif phase in ("lock", "unlock"):
                path, holder = layout.rollout_lock(container), extra["holder"]
                text = host.locks.get(path)
                mine_id = text is not None and json.loads(text)["id"] == holder["id"]
                if phase == "unlock":
                    if mine_id:
                        del host.locks[path]
                elif text is not None and not mine_id:
                    results[name] = {"said": [f"[{name}] {LOCK_HELD} {text}"],
                                     "error": "the operation Rollout lock failed"}  # fmt: skip
                else:
                    host.locks[path] = json.dumps(holder, sort_keys=True)
            elif phase == "find":
                labels = {k: v for k, v in host.labels.items() if k in ROLLOUT_LABELS}
                results[name] = {"host": name, "locks": dict(host.locks),
                                 "labels": {CONTAINER: labels} if labels else {}}  # fmt: skip
            else:
                raise AssertionError(f"unknown phase {phase}")
        if self.crash is not None and self.crash[0] == phase and self.crash[1] in hosts:
            self.crash = None  # killed after the phase did its work, before its answer
            raise KeyboardInterrupt
        return results

    def read(self, name: str, host: FakeHost, mine: dict) -> dict:
        """A ``_read`` line: the canary fact's reading and the declared container's data."""
        check: dict = {"state": host.state, "image": host.image, "labels": dict(host.labels),
                       "started": "2026-11-27T10:00:00Z", "health": None, "log_lines": [],
                       "metrics": None, "output": []}  # fmt: skip
        if mine.get("health"):
            check["health"] = dict(self.health[host.image])
            check["checkpoints"] = "ok"
            check["log_lines"] = list(host.log_lines)
        if mine.get("metrics") and host.measures:
            check["metrics"] = dict(host.metrics.get(host.image) or self.metrics[host.image])
            if host.readings and host.image != OLD_IMAGE:
                check["metrics"] = host.readings.pop(0)
        return {"host": name, "check": check, "busy": [], "busy_checked": True,
                "declared": OLD_IMAGE, "declared_image": OLD_REF, "declared_ref": OLD_REF,
                "lock": str(self.lock_path), "gpus": 2, "jupyter": True,
                "measures": host.measures, "policy": "when-idle",
                "gates": CanaryGates().model_dump()}  # fmt: skip


def lock_text() -> str:
    return dump_lock({OLD_REF: LockedImage(OLD_REF, DIGEST_OLD)})


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    lock_path = tmp_path / "images.lock.yaml"
    lock_path.write_text(lock_text())
    made = Fleet(lock_path, ["a", "b", "c"])

    def phase(self: Controller, phase: str, hosts: dict[str, dict], dry: bool,
              **extra: object) -> dict:  # fmt: skip
        return made.answer(self.rollout.container, phase, hosts, dry, extra)

    monkeypatch.setattr(Controller, "_phase", phase)
    return made


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = Journal(tmp_path / "state")
    yield made
    made.close()


@pytest.fixture
def said() -> list[str]:
    return []


def planned(waves: list[list[str]], to_image: str = NEW_IMAGE, to_ref: str = NEW_REF,
            digest: str = DIGEST_NEW, **options: object) -> Rollout:  # fmt: skip
    """The rollout as tfenv.rollout.start.build_rollout makes it."""
    every = [h for wave in waves for h in wave]
    info = {h: {"declared": OLD_IMAGE, "policy": "when-idle", "measures": True,
                "canary": h == every[0]} for h in every}  # fmt: skip
    return Rollout(id=ROLLOUT_ID, container=CONTAINER, inventory=INVENTORY, to_ref=to_ref,
                   to_image=to_image, waves=waves, hosts=info,
                   options={"waves": "1,1,100%", "bake": 0, "confirm": False,
                            "on_failure": "pause", "probe_parallel": None, **options,
                            "digest": digest, "platform_digest": None})  # fmt: skip


def start(journal: Journal, rollout: Rollout, said: list[str]) -> Controller:
    """As `tfenv rollout start`: recorded, audited, the lock taken."""
    journal.create(rollout)
    journal.audit(rollout, "start", waves=rollout.waves, options=rollout.options)
    controller = Controller(journal, rollout, said.append)
    controller.acquire()
    return controller


def again(journal: Journal, said: list[str]) -> Controller:
    """As resume/promote/rollback: a fresh Controller on the journal's rollout."""
    found = journal.get(ROLLOUT_ID)
    assert found is not None
    return Controller(journal, found, said.append)


def stored(journal: Journal) -> Rollout:
    found = journal.get(ROLLOUT_ID)
    assert found is not None
    return found


def events(journal: Journal) -> list[str]:
    return [line["event"] for line in journal.audit_lines(ROLLOUT_ID)]


def host_steps(journal: Journal, host: str) -> list[tuple[str, str]]:
    return [(s["step"], s["state"]) for s in journal.steps(ROLLOUT_ID) if s["host"] == host]


def gate_names(journal: Journal, host: str, step: str = "gates") -> dict[str, bool | None]:
    last = journal.last(ROLLOUT_ID, host, step)
    assert last is not None
    return {g["name"]: g["passed"] for g in last[1]["gates"]}


def wave_events(count: int, *extra: str) -> list[str]:
    return ["wave-start", *["replaced"] * count, *["gates"] * count, *extra, "wave-passed"]


# --- 1. a clean rollout -----------------------------------------------------------------


def test_a_clean_rollout_moves_each_host_once_and_promotes_the_lock(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    rollout = planned([["a"], ["b"], ["c"]])
    controller = start(journal, rollout, said)
    assert json.loads(fleet.hosts["a"].locks[LOCK_FILE])["id"] == ROLLOUT_ID

    assert controller.drive() == EXIT_DONE

    got = stored(journal)
    assert (got.status, got.wave, got.reason) == ("completed", 3, "")
    for name, host in fleet.hosts.items():
        assert host.replacements == [NEW_IMAGE], name
        assert (host.image, host.labels) == (NEW_IMAGE, MOVED_LABELS)
        assert gate_names(journal, name) == dict.fromkeys(HEALTH_GATES + METRIC_GATES, True)
        assert journal.last(ROLLOUT_ID, name, "baseline-metrics") == ("done", OLD_METRICS)
        assert journal.last(ROLLOUT_ID, name, "replace") == ("done", {"to": NEW_IMAGE})
        assert got.hosts[name]["from"] == OLD_IMAGE
        assert got.hosts[name]["lock"] == str(fleet.lock_path)
        assert got.hosts[name]["declared_image"] == OLD_REF
    assert host_steps(journal, "b") == [
        ("baseline", "started"), ("baseline-metrics", "done"), ("baseline", "done"),
        ("replace", "started"), ("replace", "done"), ("gates", "started"), ("gates", "passed"),
    ]  # fmt: skip
    # p99 against the host's own baseline, numbers kept in the journal
    p99 = next(g for g in journal.last(ROLLOUT_ID, "a", "gates")[1]["gates"] if g["name"] == "p99")
    assert (p99["numbers"]["new_ms"], p99["numbers"]["baseline_ms"]) == (21.0, 20.0)

    # The lock file: the new image pinned, the old declared name:tag promoted to it.
    assert fleet.lock_path.read_text() == dump_lock(
        {OLD_REF: LockedImage(OLD_REF, DIGEST_OLD), NEW_REF: LockedImage(NEW_REF, DIGEST_NEW)},
        {OLD_REF: Promotion(NEW_REF, ROLLOUT_ID)},
    )
    lock, issues = read_lock(fleet.lock_path)
    assert issues == []
    assert lock.promoted == {OLD_REF: Promotion(NEW_REF, ROLLOUT_ID)}
    resolved = lock.resolve(OLD_REF)
    assert resolved is not None and resolved.pinned == NEW_IMAGE

    # The remote side: one wave at a time, the lock taken first and released last.
    assert fleet.phases() == [
        ("lock", ["a"]),
        *[(p, [h]) for h in "abc" for p in ("observe", "replace", "check")],
        ("unlock", ["a"]),
    ]
    assert fleet.calls[1][2] == {"a": {"node": True, "metrics": True}}
    assert fleet.calls[2][2] == {"a": {"image": NEW_IMAGE, "labels": MOVED_LABELS}}
    assert fleet.calls[3][2] == {"a": {"health": True, "metrics": True}}
    assert fleet.hosts["a"].locks == {}

    audit = journal.audit_lines(ROLLOUT_ID)
    assert events(journal) == ["start", *wave_events(1) * 3, "completed"]
    assert audit[-1]["lock"] == [str(fleet.lock_path)]
    assert (audit[-1]["from"], audit[-1]["to"]) == ([OLD_IMAGE], NEW_IMAGE)
    assert [line["host"] for line in audit if line["event"] == "replaced"] == ["a", "b", "c"]
    assert said[-1].endswith(
        f"rollout {ROLLOUT_ID} completed: 3 host(s) on {NEW_REF} ({DIGEST_NEW}); "
        "the lock holds it now"
    )


# --- 1b. noise on a measurement ----------------------------------------------------------

SPIKE = {**NEW_METRICS, "p99_ms": 31.0}  # x1.55 the baseline's 20 ms: over the x1.5 limit


def test_a_p99_spike_is_measured_again_and_the_second_reading_decides(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    fleet.hosts["a"].readings = [SPIKE, NEW_METRICS]
    rollout = planned([["a"], ["b", "c"]])

    assert start(journal, rollout, said).drive() == EXIT_DONE

    assert fleet.phases()[1:5] == [("observe", ["a"]), ("replace", ["a"]), ("check", ["a"]),
                                   ("check", ["a"])]  # fmt: skip
    assert fleet.calls[4][2] == {"a": {"health": True, "metrics": True}}
    assert host_steps(journal, "a")[-3:] == [
        ("gates", "started"),
        ("gates", "measured-again"),
        ("gates", "passed"),
    ]
    first = journal.steps(ROLLOUT_ID)
    again_detail = next(s["detail"] for s in first if s["state"] == "measured-again")
    assert [g["name"] for g in again_detail["gates"]] == ["p99"]
    assert again_detail["gates"][0]["numbers"]["new_ms"] == 31.0
    assert gate_names(journal, "a") == dict.fromkeys(HEALTH_GATES + METRIC_GATES, True)
    assert any("a: p99: FAIL: 31.00 ms vs baseline 20.00 ms" in line
               and "measuring once more" in line for line in said)  # fmt: skip
    assert all(h.replacements == [NEW_IMAGE] for h in fleet.hosts.values())


def test_a_p99_regression_that_stays_fails_on_the_second_reading(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    fleet.hosts["a"].readings = [SPIKE, {**SPIKE, "p99_ms": 40.0}]
    rollout = planned([["a"], ["b", "c"]])

    assert start(journal, rollout, said).drive() == EXIT_FAILED

    assert [p for p, _ in fleet.phases()].count("check") == 2
    got = stored(journal)
    assert (got.status, got.reason) == ("paused", "gate failed: a: p99")
    p99 = next(g for g in journal.last(ROLLOUT_ID, "a", "gates")[1]["gates"] if g["name"] == "p99")
    assert (p99["passed"], p99["numbers"]["new_ms"]) == (False, 40.0)  # the second reading
    assert fleet.hosts["b"].replacements == []


@pytest.mark.parametrize("reading", [
    {**SPIKE, "outputs": [0.1, 0.2, 0.7]},  # p99 and the outputs: not noise alone
    {**NEW_METRICS, "outputs": [0.1, 0.2, 0.7]},  # the outputs alone
    {**NEW_METRICS, "errors": 3},
], ids=["p99-and-kl", "kl", "errors"])  # fmt: skip
def test_a_failure_noise_cannot_explain_is_not_measured_again(
    fleet: Fleet, journal: Journal, said: list[str], reading: dict
) -> None:
    fleet.hosts["a"].readings = [reading, NEW_METRICS]
    rollout = planned([["a"], ["b", "c"]])

    assert start(journal, rollout, said).drive() == EXIT_FAILED

    assert [p for p, _ in fleet.phases()].count("check") == 1
    assert ("gates", "measured-again") not in host_steps(journal, "a")
    assert not any("measuring once more" in line for line in said)


# --- 2./3. a failed gate ----------------------------------------------------------------


def test_a_broken_image_pauses_on_the_canary_then_rollback_puts_it_back(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    rollout = planned([["a"], ["b"], ["c"]], BROKEN_IMAGE, BROKEN_REF, DIGEST_BROKEN)
    before = fleet.lock_path.read_text()

    assert start(journal, rollout, said).drive() == EXIT_FAILED

    got = stored(journal)
    assert (got.status, got.wave) == ("paused", 0)
    assert got.reason == "gate failed: a: tensorflow-op, probe"
    assert fleet.hosts["a"].replacements == [BROKEN_IMAGE]
    assert fleet.hosts["a"].image == BROKEN_IMAGE  # left there for inspection
    assert fleet.hosts["b"].replacements == fleet.hosts["c"].replacements == []
    assert gate_names(journal, "a") == {**dict.fromkeys(HEALTH_GATES, True),
                                        "tensorflow-op": False, "probe": False}  # fmt: skip
    assert journal.last(ROLLOUT_ID, "a", "gates")[0] == "failed"
    assert fleet.lock_path.read_text() == before
    assert ROLLOUT_ID in fleet.hosts["a"].locks[LOCK_FILE]  # a paused rollout keeps its lock
    assert events(journal) == ["start", "wave-start", "replaced", "gates", "gate-failed", "paused"]
    assert ("replace", ["b"]) not in fleet.phases()

    assert again(journal, said).rollback("rolled back by a person") == EXIT_DONE

    got = stored(journal)
    assert (got.status, got.reason) == ("aborted", "rolled back by a person")
    a = fleet.hosts["a"]
    assert (a.image, a.labels, a.replacements) == (OLD_IMAGE, {}, [BROKEN_IMAGE, OLD_IMAGE])
    assert fleet.hosts["b"].replacements == fleet.hosts["c"].replacements == []
    assert fleet.phases()[-4:] == [("observe", ["a", "b", "c"]), ("replace", ["a"]),
                                   ("check", ["a"]), ("unlock", ["a"])]  # fmt: skip
    assert fleet.calls[-3][2] == {"a": {"image": OLD_IMAGE, "labels": {}}}
    assert fleet.calls[-2][2] == {"a": {"health": True, "metrics": False}}
    assert gate_names(journal, "a", "rollback-gates") == dict.fromkeys(HEALTH_GATES, True)
    assert journal.last(ROLLOUT_ID, "a", "rollback") == ("done", {})
    assert fleet.lock_path.read_text() == before
    assert a.locks == {}
    assert events(journal)[-3:] == ["rollback", "rollback-gates", "aborted"]
    assert journal.audit_lines(ROLLOUT_ID)[-1]["hosts"] == ["a"]


def test_on_failure_rollback_puts_every_moved_host_back(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    fleet.hosts["c"].metrics = {NEW_IMAGE: {**NEW_METRICS, "p99_ms": 60.0}}  # 3x its baseline
    rollout = planned([["a"], ["b", "c"]], on_failure="rollback")
    before = fleet.lock_path.read_text()

    assert start(journal, rollout, said).drive() == EXIT_FAILED

    got = stored(journal)
    assert (got.status, got.reason) == ("aborted", "gate failed on c")
    assert journal.last(ROLLOUT_ID, "c", "gates")[0] == "failed"
    assert gate_names(journal, "c")["p99"] is False
    assert journal.last(ROLLOUT_ID, "b", "gates")[0] == "passed"
    for name, host in fleet.hosts.items():
        assert (host.image, host.labels) == (OLD_IMAGE, {}), name
        assert host.replacements == [NEW_IMAGE, OLD_IMAGE], name
        assert gate_names(journal, name, "rollback-gates") == dict.fromkeys(HEALTH_GATES, True)
    assert ("replace", ["a", "b", "c"]) in fleet.phases()
    assert fleet.lock_path.read_text() == before
    assert fleet.hosts["a"].locks == {}
    assert events(journal) == [
        "start", *wave_events(1), "wave-start", "replaced", "replaced", "gates", "gates",
        "gate-failed", "rollback", "rollback-gates", "rollback-gates", "rollback-gates",
        "aborted",
    ]  # fmt: skip


# --- 4. an unreachable host -------------------------------------------------------------


def test_an_unreachable_host_pauses_its_wave_untouched_then_resume_completes(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    fleet.hosts["b"].reachable = False
    before = fleet.lock_path.read_text()

    assert start(journal, planned([["a"], ["b", "c"]]), said).drive() == EXIT_PAUSED

    got = stored(journal)
    assert (got.status, got.wave) == ("paused", 1)
    assert got.reason == "b: inconclusive: could not connect"
    assert fleet.hosts["a"].replacements == [NEW_IMAGE]
    assert fleet.hosts["b"].replacements == fleet.hosts["c"].replacements == []
    assert ("replace", ["c"]) not in fleet.phases()
    unreachable = ("inconclusive", {"error": "could not connect"})
    assert journal.last(ROLLOUT_ID, "b", "baseline") == unreachable
    assert journal.last(ROLLOUT_ID, "c", "baseline") == ("done", {"image": OLD_IMAGE})
    assert fleet.lock_path.read_text() == before
    assert events(journal)[-1] == "paused"

    fleet.hosts["b"].reachable = True
    calls = len(fleet.calls)
    assert again(journal, said).drive() == EXIT_DONE

    assert stored(journal).status == "completed"
    for name, host in fleet.hosts.items():
        assert host.replacements == [NEW_IMAGE], name
    # c's baseline was measured already: only b is measured on the old image now
    assert fleet.calls[calls] == (
        "observe",
        ["b", "c"],
        {"b": {"node": True, "metrics": True}, "c": {"node": True, "metrics": False}},
    )
    assert gate_names(journal, "c") == dict.fromkeys(HEALTH_GATES + METRIC_GATES, True)
    assert "promoted" in fleet.lock_path.read_text()


# --- 5. resume after an interruption ----------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "replace_state", "replaced_events"),
    [("check", "done", ["a", "b", "c"]), ("replace", "started", ["a", "b", "c"])],
)
def test_resume_after_a_kill_never_replaces_a_host_twice(
    fleet: Fleet, journal: Journal, said: list[str], phase: str, replace_state: str,
    replaced_events: list[str],
) -> None:  # fmt: skip
    fleet.crash = (phase, "b")  # killed once b is on the new image, before its gates
    with pytest.raises(KeyboardInterrupt):
        start(journal, planned([["a"], ["b"], ["c"]]), said).drive()

    got = stored(journal)
    assert (got.status, got.wave) == ("running", 1)
    assert fleet.hosts["b"].replacements == [NEW_IMAGE]
    assert journal.last(ROLLOUT_ID, "b", "replace")[0] == replace_state
    assert journal.last(ROLLOUT_ID, "b", "gates") == (("started", {}) if phase == "check" else None)

    assert again(journal, said).drive() == EXIT_DONE

    assert stored(journal).status == "completed"
    for name, host in fleet.hosts.items():
        assert host.replacements == [NEW_IMAGE], name
    assert journal.last(ROLLOUT_ID, "b", "baseline") == ("done", {"moved": True})
    assert journal.last(ROLLOUT_ID, "b", "gates")[0] == "passed"
    # the baseline taken before the kill still gates b
    assert gate_names(journal, "b") == dict.fromkeys(HEALTH_GATES + METRIC_GATES, True)
    replaced = [line["host"] for line in journal.audit_lines(ROLLOUT_ID)
                if line["event"] == "replaced"]  # fmt: skip
    assert replaced == replaced_events
    assert fleet.phases().count(("replace", ["b"])) == 1


# --- 6. --confirm -----------------------------------------------------------------------


def test_confirm_waits_after_each_wave_until_promote(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    before = fleet.lock_path.read_text()
    assert start(journal, planned([["a"], ["b"], ["c"]], confirm=True), said).drive() == EXIT_DONE

    got = stored(journal)
    assert (got.status, got.wave) == ("waiting", 1)
    assert got.reason == f"wave 1 passed; waiting for: tfenv rollout promote {ROLLOUT_ID}"
    assert [h.replacements for h in fleet.hosts.values()] == [[NEW_IMAGE], [], []]
    assert fleet.lock_path.read_text() == before

    assert again(journal, said).drive() == EXIT_DONE  # promote
    got = stored(journal)
    assert (got.status, got.wave) == ("waiting", 2)
    assert [h.replacements for h in fleet.hosts.values()] == [[NEW_IMAGE], [NEW_IMAGE], []]

    assert again(journal, said).drive() == EXIT_DONE  # promote: the last wave completes
    got = stored(journal)
    assert (got.status, got.wave, got.reason) == ("completed", 3, "")
    assert [h.replacements for h in fleet.hosts.values()] == [[NEW_IMAGE]] * 3
    assert events(journal) == ["start", *wave_events(1), "waiting", *wave_events(1), "waiting",
                               *wave_events(1), "completed"]  # fmt: skip
    assert "promoted" in fleet.lock_path.read_text()


# --- 7. --bake ----------------------------------------------------------------------------


def test_bake_gates_each_wave_again_after_waiting(
    fleet: Fleet, journal: Journal, said: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(run.time, "sleep", slept.append)

    assert start(journal, planned([["a"], ["b"], ["c"]], bake=1), said).drive() == EXIT_DONE

    assert slept == [1, 1, 1]
    assert stored(journal).status == "completed"
    for name in "abc":
        assert host_steps(journal, name)[-2:] == [("bake-gates", "started"),
                                                  ("bake-gates", "passed")]  # fmt: skip
        assert gate_names(journal, name, "bake-gates") == dict.fromkeys(
            HEALTH_GATES + METRIC_GATES, True
        )
    assert fleet.phases()[1:5] == [("observe", ["a"]), ("replace", ["a"]), ("check", ["a"]),
                                   ("check", ["a"])]  # fmt: skip
    assert events(journal) == ["start", *wave_events(1, "bake-gates") * 3, "completed"]


def test_a_host_that_turns_bad_during_the_bake_fails_the_rollout(
    fleet: Fleet, journal: Journal, said: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:  # while wave 2 bakes, b's container logs a traceback
            fleet.hosts["b"].log_lines = [TRACEBACK]

    monkeypatch.setattr(run.time, "sleep", sleep)
    before = fleet.lock_path.read_text()

    assert start(journal, planned([["a"], ["b"], ["c"]], bake=1), said).drive() == EXIT_FAILED

    got = stored(journal)
    assert (got.status, got.wave, got.reason) == ("paused", 1, "gate failed: b: log-clean")
    assert slept == [1, 1]
    assert journal.last(ROLLOUT_ID, "b", "gates")[0] == "passed"
    assert journal.last(ROLLOUT_ID, "b", "bake-gates")[0] == "failed"
    assert gate_names(journal, "b", "bake-gates")["log-clean"] is False
    assert fleet.hosts["c"].replacements == []
    assert fleet.lock_path.read_text() == before

    # Fixed: resume bakes wave 2 again (nothing replaced or re-measured), then goes on.
    fleet.hosts["b"].log_lines = []
    calls = len(fleet.calls)
    assert again(journal, said).drive() == EXIT_DONE
    assert slept == [1, 1, 1, 1]
    assert fleet.phases()[calls : calls + 2] == [("check", ["b"]), ("observe", ["c"])]
    assert [h.replacements for h in fleet.hosts.values()] == [[NEW_IMAGE]] * 3
    assert stored(journal).status == "completed"


# --- 8. a busy container ----------------------------------------------------------------


def test_a_busy_container_pauses_the_rollout(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    fleet.replace_answers["a"] = {"failures": [BUSY], "said": [f"[a] {BUSY}"]}

    assert start(journal, planned([["a"], ["b"], ["c"]]), said).drive() == EXIT_PAUSED

    got = stored(journal)
    assert (got.status, got.wave) == ("paused", 0)
    assert got.reason == f"a: in use: {BUSY}"
    assert journal.last(ROLLOUT_ID, "a", "replace") == ("busy", {"why": BUSY})
    assert journal.last(ROLLOUT_ID, "a", "gates") is None
    assert (fleet.hosts["a"].image, fleet.hosts["a"].replacements) == (OLD_IMAGE, [])
    assert "check" not in [phase for phase, _ in fleet.phases()]
    assert events(journal) == ["start", "wave-start", "paused"]

    del fleet.replace_answers["a"]  # idle now
    assert again(journal, said).drive() == EXIT_DONE
    assert stored(journal).status == "completed"
    assert [h.replacements for h in fleet.hosts.values()] == [[NEW_IMAGE]] * 3


def test_a_container_that_did_not_start_fails_its_gate(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    why = "the new container did not start; the previous one runs again"
    fleet.replace_answers["a"] = {"failures": [why]}

    assert start(journal, planned([["a"], ["b"]]), said).drive() == EXIT_FAILED

    got = stored(journal)
    assert (got.status, got.reason) == ("paused", "gate failed: a: replace")
    assert journal.last(ROLLOUT_ID, "a", "replace") == ("failed", {"why": why})


# --- 9. rebuild from the hosts ----------------------------------------------------------


def holder(**changes: object) -> dict:
    """The lock file's JSON, as acquire() writes it on another control machine."""
    return {"id": ROLLOUT_ID, "owner": "alice@ctl-1 (pid 4242)", "started": "2026-11-27T10:15:00Z",
            "to": NEW_IMAGE, "to_ref": NEW_REF, "container": CONTAINER,
            "waves": [["a"], ["b"], ["c"]],
            "options": {"waves": "1,1,100%", "bake": 0, "confirm": False, "on_failure": "pause",
                        "probe_parallel": None, "digest": DIGEST_NEW, "platform_digest": None},
            **changes}  # fmt: skip


def moved_elsewhere(fleet: Fleet, *names: str, lock: dict | None = None) -> None:
    for name in names:
        fleet.hosts[name].image, fleet.hosts[name].labels = NEW_IMAGE, dict(MOVED_LABELS)
    if lock is not None:
        fleet.hosts["a"].locks[LOCK_FILE] = json.dumps(lock, sort_keys=True)


def test_rebuild_from_the_labels_and_the_lock_file_then_roll_back(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    moved_elsewhere(fleet, "a", "b", lock=holder())
    other = {ROLLOUT_ID_LABEL: OTHER_ID, ROLLOUT_FROM_LABEL: OLD_IMAGE,
             ROLLOUT_TO_LABEL: BROKEN_IMAGE}  # fmt: skip
    fleet.hosts["c"].labels = other  # an earlier rollout's labels: not this one's
    fleet.hosts["a"].locks["/var/lib/tfenv/rollouts/other.lock"] = json.dumps({"id": OTHER_ID})
    fleet.hosts["b"].locks["/var/lib/tfenv/rollouts/x.lock"] = "not json"

    rebuilt = rebuild(ROLLOUT_ID, INVENTORY, ["a", "b", "c"], journal, said.append)

    assert fleet.calls[0] == ("find", ["a", "b", "c"], {"a": {}, "b": {}, "c": {}})
    assert (rebuilt.id, rebuilt.container, rebuilt.status) == (ROLLOUT_ID, CONTAINER, "paused")
    assert (rebuilt.to_image, rebuilt.to_ref) == (NEW_IMAGE, NEW_REF)
    assert rebuilt.waves == [["a"], ["b"], ["c"]]
    assert rebuilt.wave == 0  # from the start: the moved hosts are gated again
    assert rebuilt.hosts == {"a": {"from": OLD_IMAGE}, "b": {"from": OLD_IMAGE}, "c": {}}
    assert rebuilt.options == {**holder()["options"], "rebuilt": ["a", "b"]}
    assert (rebuilt.owner, rebuilt.created) == ("alice@ctl-1 (pid 4242)", "2026-11-27T10:15:00Z")
    assert rebuilt.reason == "rebuilt from the hosts: 2 moved container(s), the lock on a"
    assert journal.get(ROLLOUT_ID) == rebuilt
    assert [(s["host"], s["step"], s["state"], s["detail"]) for s in journal.steps(ROLLOUT_ID)] == [
        ("a", "replace", "done", {"rebuilt": True}),
        ("b", "replace", "done", {"rebuilt": True}),
    ]
    audit = journal.audit_lines(ROLLOUT_ID)
    assert [(line["event"], line["hosts"], line["lock"]) for line in audit] == [
        ("rebuilt", ["a", "b"], "the lock on a")
    ]

    assert Controller(journal, rebuilt, said.append).rollback("rolled back by a person") == 0

    assert stored(journal).status == "aborted"
    for name in "ab":
        host = fleet.hosts[name]
        assert (host.image, host.labels, host.replacements) == (OLD_IMAGE, {}, [OLD_IMAGE])
        assert gate_names(journal, name, "rollback-gates") == dict.fromkeys(HEALTH_GATES, True)
    assert (fleet.hosts["c"].labels, fleet.hosts["c"].replacements) == (other, [])
    assert list(fleet.hosts["a"].locks) == ["/var/lib/tfenv/rollouts/other.lock"]


def test_rebuild_without_a_lock_file_uses_the_labels_alone(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    moved_elsewhere(fleet, "b", "c")

    rebuilt = rebuild(ROLLOUT_ID, INVENTORY, ["a", "b", "c"], journal, said.append)

    assert (rebuilt.container, rebuilt.to_image, rebuilt.to_ref) == (CONTAINER, NEW_IMAGE, "")
    assert (rebuilt.waves, rebuilt.wave) == ([["b", "c"]], 0)
    assert rebuilt.options == {"rebuilt": ["b", "c"]}
    assert rebuilt.owner == "unknown"
    assert rebuilt.reason == "rebuilt from the hosts: 2 moved container(s), no lock file"


def test_rebuild_with_no_trace_anywhere_is_refused(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    fleet.hosts["c"].reachable = False
    fleet.hosts["b"].labels = {ROLLOUT_ID_LABEL: OTHER_ID, ROLLOUT_FROM_LABEL: OLD_IMAGE,
                               ROLLOUT_TO_LABEL: NEW_IMAGE}  # fmt: skip
    fleet.hosts["a"].locks[LOCK_FILE] = json.dumps(holder(id=OTHER_ID))

    with pytest.raises(RolloutError) as raised:
        rebuild(ROLLOUT_ID, INVENTORY, ["a", "b", "c"], journal, said.append)

    assert str(raised.value) == (
        f"rollout {ROLLOUT_ID} is neither in {journal.state_dir} nor on any host of "
        f"{INVENTORY} that answered (1 did not)"
    )
    assert journal.get(ROLLOUT_ID) is None
    assert journal.audit_lines() == []


def test_a_rebuilt_rollout_gates_the_hosts_it_moved_before_going_on(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    # Paused elsewhere: b moved to the new image and failed its gates there.
    moved_elsewhere(fleet, "a", "b", lock=holder())
    fleet.hosts["b"].log_lines = [TRACEBACK]
    rebuilt = rebuild(ROLLOUT_ID, INVENTORY, ["a", "b", "c"], journal, said.append)

    code = Controller(journal, rebuilt, said.append).drive()

    assert journal.last(ROLLOUT_ID, "b", "gates") is not None
    assert (code, stored(journal).status) == (EXIT_FAILED, "paused")


def test_a_rebuilt_rollout_whose_hosts_all_moved_still_promotes_the_lock(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    moved_elsewhere(fleet, "a", "b", "c", lock=holder())
    rebuilt = rebuild(ROLLOUT_ID, INVENTORY, ["a", "b", "c"], journal, said.append)

    assert Controller(journal, rebuilt, said.append).drive() == EXIT_DONE

    assert stored(journal).status == "completed"
    assert read_lock(fleet.lock_path)[0].promoted == {OLD_REF: Promotion(NEW_REF, ROLLOUT_ID)}


# --- 10. the rollout lock ---------------------------------------------------------------


def test_acquire_writes_the_holder_on_the_canary_and_may_be_repeated(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    rollout = planned([["b"], ["a", "c"]])
    controller = start(journal, rollout, said)
    controller.acquire()  # the same rollout again: its own lock

    assert fleet.phases() == [("lock", ["b"]), ("lock", ["b"])]
    assert json.loads(fleet.hosts["b"].locks[LOCK_FILE]) == {
        "id": ROLLOUT_ID, "owner": rollout.owner, "started": rollout.created, "to": NEW_IMAGE,
        "to_ref": NEW_REF, "container": CONTAINER, "waves": [["b"], ["a", "c"]],
        "options": rollout.options,
    }  # fmt: skip
    assert fleet.hosts["a"].locks == fleet.hosts["c"].locks == {}


def test_acquire_refuses_a_lock_held_by_another_rollout(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    theirs = holder(id=OTHER_ID, owner="bob@ctl-2 (pid 7)", started="2026-11-27T09:00:00Z",
                    to=BROKEN_IMAGE, to_ref=BROKEN_REF)  # fmt: skip
    fleet.hosts["a"].locks[LOCK_FILE] = json.dumps(theirs, sort_keys=True)

    with pytest.raises(RolloutError) as raised:
        start(journal, planned([["a"], ["b"]]), said)

    message = str(raised.value)
    assert re.fullmatch(
        rf"another rollout of dev holds the lock on a: rollout {OTHER_ID} by "
        rf"bob@ctl-2 \(pid 7\), for \d+ s \(to {re.escape(BROKEN_IMAGE)}\)",
        message,
    ), message
    assert json.loads(fleet.hosts["a"].locks[LOCK_FILE]) == theirs
    assert fleet.phases() == [("lock", ["a"])]


def test_acquire_on_an_unreachable_canary_says_why(
    fleet: Fleet, journal: Journal, said: list[str]
) -> None:
    fleet.hosts["a"].reachable = False
    with pytest.raises(RolloutError) as raised:
        start(journal, planned([["a"], ["b"]]), said)
    assert str(raised.value) == "could not take the rollout lock on a: could not connect"
