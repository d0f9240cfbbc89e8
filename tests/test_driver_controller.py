"""tfenv rollout --driver's decisions (tfenv.rollout.driver.DriverController) against a
scripted fleet: every pyinfra run of deploys/rollout.py (``Controller._phase``) is
answered by an in-memory fake that holds each host's NVIDIA driver (installed package,
loaded module, versions whose module never loads after a reboot), its reboots, its
running containers, whether they are in use, its reachability and the rollout lock.
The journal, the audit log and the group data file are real files in tmp_path."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tfenv import layout
from tfenv.layout import DRIVER_GROUP
from tfenv.rollout.driver import DriverController, controller_for
from tfenv.rollout.journal import Journal, Rollout
from tfenv.rollout.run import EXIT_DONE, EXIT_FAILED, EXIT_PAUSED

ROLLOUT_ID = "r-20261201-090000-d1d1"
INVENTORY = "inventories/gpu.py"
OLD, NEW = "550.127.05", "550.144.03"
OLDER = "550.90.07"
HOSTS = ["h1", "h2", "h3", "h4"]
WAVES = [["h1"], ["h2", "h3", "h4"]]
LOCK_FILE = layout.rollout_lock(DRIVER_GROUP)
SMI_ERROR = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
    "that the latest NVIDIA driver is installed and running."
)
IN_USE = "dev (1 SSH session)"
GROUP_DATA = f"""# the GPU hosts
gpu_count = 2
nvidia_driver = {{"branch": "550", "version": "{OLD}"}}  # pinned: see the runbook
docker_engine = {{"version": "27.3.1"}}
"""
HEALTHY_CHECK = {
    "state": "running healthy",
    "image": "registry.test:5000/ml/tf@sha256:" + "a" * 64,
    "labels": {},
    "started": "2026-12-01T09:00:00Z",
    "health": {"sshd": "ok", "jupyter": "ok", "gpus": 2, "tensorflow": "ok"},
    "checkpoints": "ok",
    "log_lines": [],
    "metrics": None,
    "output": [],
}


class Killed(BaseException):
    """The tool killed (kill -9) while a pyinfra run was under way."""


# --- the fake fleet ---------------------------------------------------------------------


@dataclass
class FakeHost:
    installed: str = OLD
    module: str | None = OLD  # the loaded kernel module (None: not loaded)
    broken: set[str] = field(default_factory=set)  # versions whose module never loads
    reboots: int = 0
    running: list[str] = field(default_factory=lambda: ["dev"])
    busy: str | None = None  # a container in use: why
    reachable: bool = True
    gpus: int = 2
    no_reboot: bool = False  # the reboot never happens: the old module stays loaded
    record: dict | None = None  # the host's record of the driver rollout moving it
    locks: dict[str, str] = field(default_factory=dict)  # rollout lock files: path -> text
    moves: list[str] = field(default_factory=list)  # every version it was moved to


class Fleet:
    """Answers ``Controller._phase`` as the pyinfra runs of deploys/driver_rollout.py would."""

    def __init__(self, names: list[str]) -> None:
        self.hosts = {name: FakeHost() for name in names}
        self.calls: list[tuple[str, list[str], dict]] = []
        self.kill_after_move: int | None = None  # the n-th driver-move call (1-based) dies
        self.move_answers: dict[str, dict] = {}  # host -> its scripted driver-move outcome

    def phases(self) -> list[tuple[str, list[str]]]:
        return [(phase, hosts) for phase, hosts, _ in self.calls]

    def moves(self) -> list[list[str]]:
        return [hosts for phase, hosts, _ in self.calls if phase == "driver-move"]

    def reboots(self) -> dict[str, int]:
        return {name: host.reboots for name, host in self.hosts.items()}

    def answer(self, container: str, phase: str, hosts: dict[str, dict], dry: bool,
               extra: dict) -> dict:  # fmt: skip
        if not hosts:
            return {}  # as Controller._phase: no pyinfra run for no host
        assert container == DRIVER_GROUP
        assert dry is (phase in ("driver-observe", "driver-check")), phase
        self.calls.append((phase, sorted(hosts), json.loads(json.dumps(hosts))))
        results: dict[str, dict] = {}
        for name, mine in hosts.items():
            host = self.hosts[name]
            if not host.reachable:
                results[name] = {"error": "could not connect"}
            elif phase == "driver-observe":
                results[name] = {"host": name, "driver": self.driver(host), "declared": OLD,
                                 "running": sorted(host.running)}  # fmt: skip
            elif phase == "driver-check":
                results[name] = {
                    "host": name,
                    "driver": self.driver(host),
                    "gpu_count": 2,
                    "containers": {
                        "dev": {"check": dict(HEALTHY_CHECK), "gpus": 2, "jupyter": True}
                    },
                }
            elif phase == "driver-move" and name in self.move_answers:
                results[name] = self.move_answers[name]  # nothing changed there
            elif phase == "driver-move":
                outcome = self.move(name, host, mine)
                if outcome:
                    results[name] = outcome
            elif phase == "driver-forget":
                if (host.record or {}).get("id") == mine["forget"]["id"]:
                    host.record = None
            elif phase in ("lock", "unlock"):
                self.lock(name, host, phase, extra["holder"], results)
            else:
                raise AssertionError(f"unknown phase {phase}")
        if phase == "driver-move" and len(self.moves()) == self.kill_after_move:
            # Killed after the reboot, before the containers started again: the hosts
            # moved, their containers are stopped, the controller never hears of it.
            self.kill_after_move = None
            for name in hosts:
                self.hosts[name].running = []
            raise Killed
        return results

    def driver(self, host: FakeHost) -> dict:
        loaded = host.module is not None
        return {
            "driver_state": "ok" if loaded else "not-loaded",
            "driver_version": host.installed if loaded else None,  # userspace (nvidia-smi)
            "module_version": host.module,
            "smi_error": None if loaded else SMI_ERROR,
            "gpus": host.gpus if loaded else 0,
            "installed": host.installed,
            "record": host.record,
        }

    def move(self, name: str, host: FakeHost, mine: dict) -> dict:
        version = mine["version"]
        due = host.module != version
        if due and host.busy:
            return {
                "failures": [f"driver {version}: nothing changed and the host NOT rebooted: "
                             f"container(s) in use (replace: when-idle): {host.busy}. The "
                             "driver change is pending (driver packages move)."],
                "said": [f"[{name}] Containers idle for the driver's reboot: failed"],
            }  # fmt: skip
        if mine.get("record"):
            host.record = dict(mine["record"])
        host.installed = version
        host.moves.append(version)
        if due and not host.no_reboot:
            host.reboots += 1
            host.module = None if version in host.broken else version
            host.running = sorted(mine["running"])  # those it stopped, started again
        else:
            host.running = sorted({*host.running, *mine["running"]})
        if mine.get("forget") and (host.record or {}).get("id") == mine["forget"]["id"]:
            host.record = None
        return {}

    def lock(self, name: str, host: FakeHost, phase: str, holder: dict,
             results: dict) -> None:  # fmt: skip
        text = host.locks.get(LOCK_FILE)
        ours = text is not None and json.loads(text)["id"] == holder["id"]
        if phase == "unlock":
            if ours:
                del host.locks[LOCK_FILE]
        elif text is not None and not ours:
            results[name] = {"error": "the operation Rollout lock failed"}
        else:
            host.locks[LOCK_FILE] = json.dumps(holder, sort_keys=True)


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Fleet:
    made = Fleet(HOSTS)

    def phase(self: DriverController, phase: str, hosts: dict[str, dict], dry: bool,
              **extra: object) -> dict:  # fmt: skip
        return made.answer(self.rollout.container, phase, hosts, dry, extra)

    monkeypatch.setattr(DriverController, "_phase", phase)
    return made


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = Journal(tmp_path / "state")
    yield made
    made.close()


@pytest.fixture
def group_data(tmp_path: Path) -> Path:
    path = tmp_path / "group_data" / "gpu.py"
    path.parent.mkdir()
    path.write_text(GROUP_DATA)
    return path


@pytest.fixture
def said() -> list[str]:
    return []


def planned(group_data: Path, **options: object) -> Rollout:
    """The rollout as tfenv.rollout.start.build_driver_rollout makes it."""
    info = {h: {"declared": OLD, "gpu_count": 2, "canary": h == "h1", "containers": ["dev"],
                "policy": "when-idle"} for h in HOSTS}  # fmt: skip
    return Rollout(
        id=ROLLOUT_ID, container=DRIVER_GROUP, inventory=INVENTORY, to_ref=f"nvidia-driver {NEW}",
        to_image=NEW, waves=[list(w) for w in WAVES], hosts=info,
        options={"waves": "1,100%", "bake": 0, "confirm": False, "on_failure": "pause",
                 "probe_parallel": None, "max_unavailable": 2, **options, "kind": "driver",
                 "declarations": {str(group_data): OLD}},
    )  # fmt: skip


def start(journal: Journal, rollout: Rollout, said: list[str]) -> DriverController:
    """As `tfenv rollout start --driver`: recorded, audited, the lock taken."""
    journal.create(rollout)
    journal.audit(rollout, "start", waves=rollout.waves, options=rollout.options)
    controller = controller_for(journal, rollout, said.append)
    assert type(controller) is DriverController
    controller.acquire()
    return controller


def again(journal: Journal, said: list[str]) -> DriverController:
    """As resume/rollback: a fresh controller on the journal's rollout."""
    found = journal.get(ROLLOUT_ID)
    assert found is not None
    controller = controller_for(journal, found, said.append)
    assert type(controller) is DriverController
    return controller


def stored(journal: Journal) -> Rollout:
    found = journal.get(ROLLOUT_ID)
    assert found is not None
    return found


def events(journal: Journal) -> list[str]:
    return [line["event"] for line in journal.audit_lines(ROLLOUT_ID)]


def gate_names(journal: Journal, host: str, step: str = "gates") -> dict[str, bool | None]:
    last = journal.last(ROLLOUT_ID, host, step)
    assert last is not None
    return {g["name"]: g["passed"] for g in last[1]["gates"]}


PASSED_GATES = dict.fromkeys(["driver", "gpu-count", "dev.running-healthy", "dev.sshd",
                              "dev.jupyter", "dev.gpus", "dev.tensorflow-op",
                              "dev.checkpoints-writable", "dev.log-clean"], True)  # fmt: skip


# --- 1. a clean rollout -----------------------------------------------------------------


def test_a_clean_driver_rollout_moves_every_host_once_and_declares_the_version(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    controller = start(journal, planned(group_data), said)
    assert json.loads(fleet.hosts["h1"].locks[LOCK_FILE])["id"] == ROLLOUT_ID

    assert controller.drive() == EXIT_DONE

    got = stored(journal)
    assert (got.status, got.wave, got.reason) == ("completed", 2, "")
    for name, host in fleet.hosts.items():
        assert (host.installed, host.module, host.reboots, host.moves) == (NEW, NEW, 1, [NEW])
        assert host.record is None, name  # removed once the group data declares NEW
        assert got.hosts[name]["from"] == OLD
        assert got.hosts[name]["running"] == ["dev"]
        assert journal.last(ROLLOUT_ID, name, "replace") == ("done", {"to": NEW})
        assert gate_names(journal, name) == PASSED_GATES, name
    # Only the version literal changed: the comment, the branch and the rest stay.
    assert group_data.read_text() == GROUP_DATA.replace(OLD, NEW)
    # The lock taken first on the canary, released last.
    assert fleet.phases()[0] == ("lock", ["h1"])
    assert fleet.phases()[-2:] == [("driver-forget", HOSTS), ("unlock", ["h1"])]
    assert fleet.hosts["h1"].locks == {}
    assert fleet.calls[0][2] == {"h1": {}}
    # What each host was told: its version, its containers, and the rollout's record.
    move = next(c for c in fleet.calls if c[0] == "driver-move")
    assert move[2] == {"h1": {"version": NEW, "running": ["dev"],
                              "record": {"id": ROLLOUT_ID, "from": OLD, "to": NEW}}}  # fmt: skip
    assert events(journal) == [
        "start",
        "wave-start", "driver-moved", "gates", "wave-passed",
        "wave-start", "driver-moved", "driver-moved", "gates", "gates",  # h2, h3 together
        "driver-moved", "gates", "wave-passed",  # then h4
        "completed",
    ]  # fmt: skip
    completed = journal.audit_lines(ROLLOUT_ID)[-1]
    assert (completed["declared"], completed["problems"]) == ([str(group_data)], [])
    assert completed["from"] == [OLD] and completed["to"] == NEW
    assert f"rollout {ROLLOUT_ID} completed: 4 host(s) on driver {NEW}" in said[-1]
    assert str(group_data) in said[-1]
    assert not any("was not released" in line for line in said)


def test_a_host_that_already_has_the_module_is_not_rebooted(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    fleet.hosts["h3"].installed = fleet.hosts["h3"].module = NEW  # upgraded by hand

    assert start(journal, planned(group_data), said).drive() == EXIT_DONE

    assert fleet.reboots() == {"h1": 1, "h2": 1, "h3": 0, "h4": 1}
    assert stored(journal).hosts["h3"]["from"] == NEW  # what it ran, not what was declared
    assert group_data.read_text() == GROUP_DATA.replace(OLD, NEW)


# --- 2. at most --max-unavailable hosts down at once ------------------------------------


@pytest.mark.parametrize(
    ("max_unavailable", "moves"),
    [
        (1, [["h1"], ["h2"], ["h3"], ["h4"]]),
        (2, [["h1"], ["h2", "h3"], ["h4"]]),
        (3, [["h1"], ["h2", "h3", "h4"]]),
    ],
)
def test_at_most_max_unavailable_hosts_move_at_once_each_gated_before_the_next(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str], max_unavailable: int,
    moves: list[list[str]],
) -> None:  # fmt: skip
    rollout = planned(group_data, max_unavailable=max_unavailable)

    assert start(journal, rollout, said).drive() == EXIT_DONE

    assert fleet.moves() == moves
    assert all(len(hosts) <= max_unavailable for hosts in fleet.moves())
    # Each chunk passes its gates before the next chunk goes down.
    work = [(p, h) for p, h in fleet.phases() if p in ("driver-move", "driver-check")]
    assert work == [(p, hosts) for hosts in moves for p in ("driver-move", "driver-check")]
    assert fleet.reboots() == dict.fromkeys(HOSTS, 1)
    assert stored(journal).status == "completed"
    assert f"(at most {len(moves[1])} host(s) down at once)" in "\n".join(said)


# --- 3./4. a driver whose module does not load ------------------------------------------


def test_a_broken_driver_pauses_on_the_canary_then_rollback_puts_it_back(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    for host in fleet.hosts.values():
        host.broken = {NEW}

    assert start(journal, planned(group_data), said).drive() == EXIT_FAILED

    got = stored(journal)
    assert (got.status, got.wave) == ("paused", 0)
    assert got.reason == "gate failed: h1: driver, gpu-count"
    h1 = fleet.hosts["h1"]
    assert (h1.installed, h1.module, h1.reboots) == (NEW, None, 1)  # left for inspection
    assert fleet.reboots() == {"h1": 1, "h2": 0, "h3": 0, "h4": 0}
    assert fleet.moves() == [["h1"]]
    assert all(fleet.hosts[h].installed == OLD for h in ("h2", "h3", "h4"))
    gates = gate_names(journal, "h1")
    assert (gates["driver"], gates["gpu-count"]) == (False, False)
    assert journal.last(ROLLOUT_ID, "h1", "gates")[0] == "failed"
    assert group_data.read_text() == GROUP_DATA
    assert ROLLOUT_ID in h1.locks[LOCK_FILE]  # a paused rollout keeps its lock
    assert events(journal)[-3:] == ["gates", "gate-failed", "paused"]
    assert any(SMI_ERROR in line for line in said)

    assert again(journal, said).rollback("by a person") == EXIT_DONE

    got = stored(journal)
    assert (got.status, got.reason) == ("aborted", "by a person")
    assert (h1.installed, h1.module, h1.reboots, h1.moves) == (OLD, OLD, 2, [NEW, OLD])
    assert h1.record is None  # the rollback forgets the host's record
    assert fleet.reboots() == {"h1": 2, "h2": 0, "h3": 0, "h4": 0}
    assert fleet.moves() == [["h1"], ["h1"]]
    back = [c for c in fleet.calls if c[0] == "driver-move"][-1][2]
    assert back == {"h1": {"version": OLD, "running": ["dev"], "forget": {"id": ROLLOUT_ID}}}
    assert journal.last(ROLLOUT_ID, "h1", "rollback") == ("done", {"to": OLD})
    assert journal.last(ROLLOUT_ID, "h1", "rollback-gates")[0] == "passed"
    assert gate_names(journal, "h1", "rollback-gates")["driver"] is True
    assert group_data.read_text() == GROUP_DATA
    assert h1.locks == {}
    assert fleet.phases()[-1] == ("unlock", ["h1"])
    assert events(journal)[-1] == "aborted"


def test_a_broken_driver_with_on_failure_rollback_ends_aborted(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    fleet.hosts["h1"].broken = {NEW}
    rollout = planned(group_data, on_failure="rollback")

    assert start(journal, rollout, said).drive() == EXIT_FAILED

    got = stored(journal)
    assert (got.status, got.reason) == ("aborted", "gate failed on h1")
    h1 = fleet.hosts["h1"]
    assert (h1.installed, h1.module, h1.moves) == (OLD, OLD, [NEW, OLD])
    assert fleet.reboots() == {"h1": 2, "h2": 0, "h3": 0, "h4": 0}
    assert fleet.moves() == [["h1"], ["h1"]]
    assert journal.last(ROLLOUT_ID, "h1", "rollback-gates")[0] == "passed"
    assert group_data.read_text() == GROUP_DATA
    assert h1.locks == {}
    assert events(journal)[-5:] == [
        "gate-failed", "rollback", "driver-moved", "rollback-gates", "aborted"
    ]  # fmt: skip


# --- 5. resume after a kill -------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_unavailable", "killed", "resumed"),
    [(1, ["h3"], [["h3"], ["h4"]]), (2, ["h4"], [["h4"]])],
)
def test_resume_after_a_kill_mid_move_reboots_no_host_twice(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str], max_unavailable: int,
    killed: list[str], resumed: list[list[str]],
) -> None:  # fmt: skip
    fleet.kill_after_move = 3  # wave 1: one move; wave 2: its second move dies after applying
    controller = start(journal, planned(group_data, max_unavailable=max_unavailable), said)

    with pytest.raises(Killed):
        controller.drive()

    assert fleet.moves()[-1] == killed
    for host in killed:
        assert fleet.hosts[host].module == NEW  # moved, but the journal never heard of it
        assert fleet.hosts[host].reboots == 1
        assert journal.last(ROLLOUT_ID, host, "replace") == ("started", {"to": NEW})
    got = stored(journal)
    assert (got.status, got.wave) == ("running", 1)
    assert group_data.read_text() == GROUP_DATA
    assert all(fleet.hosts[host].running == [] for host in killed)
    before, calls_before = len(fleet.moves()), len(fleet.calls)

    assert again(journal, said).drive() == EXIT_DONE

    got = stored(journal)
    assert (got.status, got.wave) == ("completed", 2)
    assert fleet.moves()[before:] == resumed  # the gated hosts are not moved again
    told = {h: mine for phase, _, sent in fleet.calls[calls_before:] if phase == "driver-move"
            for h, mine in sent.items()}  # fmt: skip
    assert fleet.reboots() == dict.fromkeys(HOSTS, 1)
    for name, host in fleet.hosts.items():
        assert (host.installed, host.module) == (NEW, NEW)
        assert got.hosts[name]["from"] == OLD  # the first look's, not the moved module
        assert journal.last(ROLLOUT_ID, name, "gates")[0] == "passed"
        assert host.running == ["dev"], name  # as before the rollout, after the kill too
    for host in killed:
        assert fleet.hosts[host].moves == [NEW, NEW]  # moved again, not rebooted again
        assert fleet.hosts[host].running == ["dev"]
        assert told[host]["running"] == ["dev"]  # the first look's, not the stopped ones
    assert group_data.read_text() == GROUP_DATA.replace(OLD, NEW)
    assert fleet.hosts["h1"].locks == {}


def test_a_rollback_after_a_kill_mid_move_takes_the_moved_host_back(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    fleet.kill_after_move = 2  # wave 2's first move ([h2, h3]) dies after applying
    controller = start(journal, planned(group_data), said)
    with pytest.raises(Killed):
        controller.drive()

    assert again(journal, said).rollback("by a person") == EXIT_DONE

    assert stored(journal).status == "aborted"
    for name, host in fleet.hosts.items():
        assert (host.installed, host.module) == (OLD, OLD), name
    assert fleet.reboots() == {"h1": 2, "h2": 2, "h3": 2, "h4": 0}
    assert group_data.read_text() == GROUP_DATA


# --- 6./7. busy and unreachable hosts pause -----------------------------------------------


def test_a_busy_host_under_when_idle_pauses_then_resumes_once_idle(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    fleet.hosts["h3"].busy = IN_USE

    assert start(journal, planned(group_data), said).drive() == EXIT_PAUSED

    got = stored(journal)
    assert (got.status, got.wave) == ("paused", 1)
    assert got.reason.startswith("h3: in use: driver 550.144.03: nothing changed and the host "
                                 "NOT rebooted")  # fmt: skip
    assert IN_USE in got.reason
    assert journal.last(ROLLOUT_ID, "h3", "replace")[0] == "busy"
    assert fleet.reboots() == {"h1": 1, "h2": 1, "h3": 0, "h4": 0}
    assert fleet.hosts["h3"].installed == OLD
    assert fleet.moves() == [["h1"], ["h2", "h3"]]  # h4 not moved after the busy host
    assert journal.last(ROLLOUT_ID, "h2", "gates")[0] == "passed"  # its moved peer is gated
    assert group_data.read_text() == GROUP_DATA
    assert ROLLOUT_ID in fleet.hosts["h1"].locks[LOCK_FILE]

    fleet.hosts["h3"].busy = None
    assert again(journal, said).drive() == EXIT_DONE

    assert stored(journal).status == "completed"
    assert fleet.moves()[2:] == [["h3", "h4"]]  # h2 (gated) is not moved again
    assert fleet.reboots() == dict.fromkeys(HOSTS, 1)
    assert group_data.read_text() == GROUP_DATA.replace(OLD, NEW)
    assert fleet.hosts["h1"].locks == {}


def test_an_unreachable_host_pauses_its_wave_before_anything_moves(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    fleet.hosts["h3"].reachable = False

    assert start(journal, planned(group_data), said).drive() == EXIT_PAUSED

    got = stored(journal)
    assert (got.status, got.wave) == ("paused", 1)
    assert got.reason == "h3: inconclusive: could not connect"
    assert fleet.moves() == [["h1"]]  # nothing of wave 2 moved
    assert fleet.reboots() == {"h1": 1, "h2": 0, "h3": 0, "h4": 0}
    assert journal.last(ROLLOUT_ID, "h3", "baseline") == (
        "inconclusive", {"error": "could not connect"}
    )  # fmt: skip
    assert "from" not in got.hosts["h3"]
    assert group_data.read_text() == GROUP_DATA

    fleet.hosts["h3"].reachable = True
    assert again(journal, said).drive() == EXIT_DONE
    assert fleet.reboots() == dict.fromkeys(HOSTS, 1)
    assert stored(journal).status == "completed"


def test_a_host_that_stops_answering_during_its_move_pauses_inconclusive(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str], monkeypatch
) -> None:
    real = fleet.move

    def lost(name: str, host: FakeHost, mine: dict) -> dict:
        outcome = real(name, host, mine)
        return {"error": "could not reconnect after the reboot"} if name == "h2" else outcome

    monkeypatch.setattr(fleet, "move", lost)

    assert start(journal, planned(group_data), said).drive() == EXIT_PAUSED

    got = stored(journal)
    assert got.status == "paused"
    assert got.reason == "h2: inconclusive: could not reconnect after the reboot"
    assert journal.last(ROLLOUT_ID, "h2", "replace")[0] == "inconclusive"
    assert fleet.moves() == [["h1"], ["h2", "h3"]]  # h4 waits
    assert group_data.read_text() == GROUP_DATA


# --- the host's record ----------------------------------------------------------------


def test_a_host_this_rollout_moved_before_tells_its_previous_driver(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    """A journal that never recorded h2's first look: the host's record says where it was."""
    h2 = fleet.hosts["h2"]
    h2.installed = h2.module = NEW
    h2.record = {"id": ROLLOUT_ID, "from": OLDER, "to": NEW}
    fleet.hosts["h4"].broken = {NEW}

    assert start(journal, planned(group_data), said).drive() == EXIT_FAILED

    got = stored(journal)
    assert got.hosts["h2"]["from"] == OLDER
    assert got.hosts["h3"]["from"] == OLD

    assert again(journal, said).rollback("by a person") == EXIT_DONE
    assert (h2.installed, h2.module) == (OLDER, OLDER)
    for name in ("h1", "h3", "h4"):
        assert fleet.hosts[name].module == OLD, name


# --- a move that fails, a reboot that did not happen ----------------------------------


def test_a_failed_driver_move_pauses_with_the_move_as_its_failed_gate(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    why = "E: Version '550.144.03-0ubuntu1' for 'nvidia-driver-550' was not found"
    fleet.move_answers["h1"] = {"failures": [why], "said": [f"[h1] {why}"]}

    assert start(journal, planned(group_data), said).drive() == EXIT_FAILED

    got = stored(journal)
    assert (got.status, got.reason) == ("paused", "gate failed: h1: move")
    assert journal.last(ROLLOUT_ID, "h1", "replace") == ("failed", {"why": why})
    assert journal.last(ROLLOUT_ID, "h1", "gates") is None  # a host that did not move
    assert [p for p, _ in fleet.phases()] == ["lock", "driver-observe", "driver-move"]
    assert fleet.reboots() == dict.fromkeys(HOSTS, 0)
    assert group_data.read_text() == GROUP_DATA


def test_the_new_userspace_on_the_old_module_fails_the_driver_gate(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    fleet.hosts["h1"].no_reboot = True  # installed, but the old module stays loaded

    assert start(journal, planned(group_data), said).drive() == EXIT_FAILED

    got = stored(journal)
    assert (got.status, got.reason) == ("paused", "gate failed: h1: driver")
    gate = journal.last(ROLLOUT_ID, "h1", "gates")[1]["gates"][0]
    assert gate["name"] == "driver" and gate["passed"] is False
    assert gate["numbers"] == {"nvidia_smi": NEW, "module": OLD, "expected": NEW}
    assert gate["detail"] == f"nvidia-smi: {NEW}, module {OLD}; {NEW} expected"
    assert fleet.moves() == [["h1"]]
    assert group_data.read_text() == GROUP_DATA


# --- fixes found by review ----------------------------------------------------------------


def test_a_container_stopped_by_its_user_during_a_busy_pause_is_not_started_again(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    fleet.hosts["h3"].busy = IN_USE
    assert start(journal, planned(group_data), said).drive() == EXIT_PAUSED
    # The researcher finishes and stops dev; the rollout resumes.
    fleet.hosts["h3"].busy = None
    fleet.hosts["h3"].running = []
    assert again(journal, said).drive() == EXIT_DONE
    sent = [hosts["h3"] for phase, _, hosts in fleet.calls
            if phase == "driver-move" and "h3" in hosts]  # fmt: skip
    assert sent[-1]["running"] == []
    assert fleet.hosts["h3"].running == []


def test_a_rollback_stops_after_a_chunk_that_fails_so_no_more_hosts_are_down(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    controller = start(journal, planned(group_data, max_unavailable=1), said)
    assert controller.drive() == EXIT_DONE
    for host in fleet.hosts.values():
        host.broken.add(OLD)  # going back does not load either
    assert again(journal, said).rollback("by a person") == EXIT_PAUSED
    backs = [hosts for phase, hosts, sent in fleet.calls
             if phase == "driver-move" and any("forget" in m for m in sent.values())]  # fmt: skip
    assert backs == [["h1"]]  # stopped at the first host that failed its gates
    assert stored(journal).status == "paused"
    assert [h.module for h in fleet.hosts.values()] == [None, NEW, NEW, NEW]


def test_a_completion_that_cannot_write_the_group_data_exits_non_zero(
    fleet: Fleet, journal: Journal, group_data: Path, said: list[str]
) -> None:
    controller = start(journal, planned(group_data), said)
    group_data.write_text(GROUP_DATA.replace(OLD, "550.90.07"))  # edited meanwhile
    assert controller.drive() == EXIT_FAILED
    got = stored(journal)
    assert got.status == "completed" and "550.90.07" in got.reason
    assert any("NOT all done" in line for line in said)


# A rollback moves back only the hosts whose move began (an audit planted the bug
# of moving h4 back too; see tests/test_planted_rollout.py for the others).


def rollback_moves(fleet: Fleet) -> list[list[str]]:
    return [hosts for phase, hosts, sent in fleet.calls
            if phase == "driver-move" and any("forget" in m for m in sent.values())]  # fmt: skip


def test_a_rollback_leaves_a_host_whose_move_never_began(
    fleet: Fleet, journal: Journal, group_data: Path
) -> None:
    said: list[str] = []
    fleet.hosts["h2"].broken = {NEW}  # wave 2's first chunk [h2, h3] fails its gates
    assert start(journal, planned(group_data), said).drive() == EXIT_FAILED
    got = stored(journal)
    assert got.status == "paused"
    assert "from" in got.hosts["h4"]  # h4 was looked at (its baseline) ...
    assert journal.last(got.id, "h4", "replace") is None  # ... but never moved
    assert fleet.moves() == [["h1"], ["h2", "h3"]]

    assert again(journal, said).rollback("by a person") == EXIT_DONE

    assert rollback_moves(fleet) == [["h1", "h2"], ["h3"]]  # h4 is not touched
    assert fleet.hosts["h4"].moves == [] and fleet.hosts["h4"].reboots == 0
    assert journal.last(got.id, "h4", "rollback") is None
    for name in ("h1", "h2", "h3"):
        host = fleet.hosts[name]
        assert (host.installed, host.module, host.moves) == (OLD, OLD, [NEW, OLD]), name
    assert stored(journal).status == "aborted"
    assert "3 host(s) back to their previous driver" in "\n".join(said)


def test_a_rollback_leaves_a_host_refused_as_busy(
    fleet: Fleet, journal: Journal, group_data: Path
) -> None:
    said: list[str] = []
    fleet.hosts["h2"].busy = "dev (1 SSH session)"
    start(journal, planned(group_data), said).drive()
    assert journal.last(stored(journal).id, "h2", "replace")[0] == "busy"

    assert again(journal, said).rollback("by a person") == EXIT_DONE

    moved_back = {h for hosts in rollback_moves(fleet) for h in hosts}
    assert "h2" not in moved_back and "h1" in moved_back
    assert fleet.hosts["h2"].moves == []
