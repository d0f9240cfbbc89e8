"""A rolling NVIDIA driver upgrade on the rollout machinery (``tfenv rollout start
--driver VERSION``): the same waves, bake, confirm, pause or rollback, journal,
lock, audit log and resume as an image rollout; per host a different move.

Per host: where it stands (driver, running containers), then, at most
``--max-unavailable`` hosts at once: the busy guard of its containers (their
``replace`` policy), the containers stopped cleanly, the host's record of the
rollout written, the pinned driver installed, a reboot, the containers started
again; then the gates: nvidia-smi answers with the new version and the declared
number of GPUs, and every container is healthy with its GPUs and a TF op inside.
A host that already runs the new module is not rebooted again (``resume``).

A rollback moves the hosts back to the version each had (packages downgraded,
reboot, the same gates). Completion writes the new version into the group data
file that declares it (:mod:`tfenv.rollout.declared_driver`).
"""

from __future__ import annotations

from pathlib import Path

from tfenv.layout import DRIVER_GROUP, DRIVER_ROLLOUT_FILE
from tfenv.rollout.declared_driver import DeclarationError, write_version
from tfenv.rollout.gates import Gate, health_gates
from tfenv.rollout.journal import Rollout
from tfenv.rollout.run import (
    BUSY_MARKS,
    EXIT_DONE,
    EXIT_FAILED,
    Controller,
    WaveResult,
)

KIND = "driver"
BUSY_MARKS_DRIVER = (*BUSY_MARKS, "NOT rebooted", "not rebooted")


def is_driver(rollout: Rollout) -> bool:
    return rollout.options.get("kind") == KIND or rollout.container == DRIVER_GROUP


def driver_gates(line: dict, want: str) -> list[Gate]:
    """The gates of a host after its move: the driver (nvidia-smi and the loaded module
    say ``want``), the declared GPU count, and every container's built-in health gates."""
    driver = line.get("driver") or {}
    smi = driver.get("driver_version")
    module = driver.get("module_version")
    answers = driver.get("driver_state") == "ok" and smi == want and module == want
    said = f"nvidia-smi: {driver.get('smi_error') or driver.get('driver_state')}"
    if driver.get("driver_state") == "ok":
        said = f"nvidia-smi: {smi}, module {module}"
    gates = [Gate("driver", answers, f"{said}; {want} expected",
                  {"nvidia_smi": smi, "module": module, "expected": want})]  # fmt: skip
    declared = line.get("gpu_count")
    if declared is not None:
        seen = driver.get("gpus", 0)
        gates.append(Gate("gpu-count", seen == declared, f"{seen} GPU(s), {declared} declared",
                          {"visible": seen, "declared": declared}))  # fmt: skip
    for name, entry in sorted((line.get("containers") or {}).items()):
        for gate in health_gates(entry["check"], entry.get("gpus"), entry.get("jupyter", False)):
            gates.append(Gate(f"{name}.{gate.name}", gate.passed, gate.detail, gate.numbers))
    return gates


class DriverController(Controller):
    """:class:`Controller` with a driver move instead of a container replacement."""

    def _chunks(self, hosts: list[str]) -> list[list[str]]:
        size = max(1, int(self.rollout.options.get("max_unavailable") or 1))
        return [hosts[i : i + size] for i in range(0, len(hosts), size)]

    def run_wave(self, wave: int, hosts: list[str]) -> WaveResult:
        r, j = self.rollout, self.journal
        result = WaveResult({}, {}, {})
        todo = [h for h in hosts if (j.last(r.id, h, "gates") or ("",))[0] != "passed"]
        if not todo:
            return result
        for host in todo:
            j.step(r, host, wave, "baseline", "started")
        observed = self._phase("driver-observe", {h: {} for h in todo}, True)
        for host in todo:
            line = observed.get(host, {})
            if "driver" not in line:
                why = line.get("error") or "no answer"
                j.step(r, host, wave, "baseline", "inconclusive", {"error": why})
                result.inconclusive[host] = why
                continue
            info = r.hosts[host]
            record = line["driver"].get("record") or {}
            if "from" not in info:  # the first look, before anything moved
                moved_before = record.get("id") == r.id  # a lost journal: the host tells
                info["from"] = record.get("from") if moved_before else (
                    line["driver"].get("module_version") or line["declared"])  # fmt: skip
            # Which containers to stop and start again: as they are now, unless a move
            # of this host began (it may have stopped them: keep what it saw).
            began = j.last(r.id, host, "replace")
            if "running" not in info or began is None or began[0] == "busy":
                info["running"] = line["running"]
            j.save(r)
            j.step(r, host, wave, "baseline", "done", {"driver": line["driver"],
                                                       "running": info["running"]})  # fmt: skip
            self.say(f"[{self.elapsed()}]   {host}: driver {line['driver'].get('module_version')}"
                     f" loaded; running: {', '.join(info['running']) or 'none'}")  # fmt: skip
        if result.inconclusive:
            return result
        for chunk in self._chunks(todo):
            self.say(f"[{self.elapsed()}]   moving {', '.join(chunk)} to driver {r.to_image} "
                     f"(at most {len(chunk)} host(s) down at once)")  # fmt: skip
            moved = self.move(wave, chunk, r.to_image, "replace", result)
            self.gate(wave, moved, result)
            if not result.ok:
                break  # a failed, busy or unknown host stops the wave here
        return result

    def move(self, wave: int, hosts: list[str], version: str, step: str,
             result: WaveResult, back: bool = False) -> list[str]:  # fmt: skip
        r, j = self.rollout, self.journal
        for host in hosts:
            j.step(r, host, wave, step, "started", {"to": version})
        steps = {}
        for host in hosts:
            info = r.hosts[host]
            mine: dict = {"version": version, "running": info.get("running", [])}
            if back:
                mine["forget"] = {"id": r.id}
            else:
                mine["record"] = {"id": r.id, "from": info["from"], "to": version}
            steps[host] = mine
        outcome_of = self._phase("driver-move", steps, False)
        done = []
        for host in hosts:
            outcome = outcome_of.get(host, {})
            failures = outcome.get("failures", [])
            said = [*failures, *outcome.get("said", [])]
            busy = [ln for ln in said if any(m in ln for m in BUSY_MARKS_DRIVER)]
            if busy:
                j.step(r, host, wave, step, "busy", {"why": busy[0]})
                result.busy[host] = busy[0]
            elif failures:
                j.step(r, host, wave, step, "failed", {"why": failures[-1]})
                result.failed[host] = [Gate("move", False, failures[-1][:300])]
            elif "error" in outcome:
                j.step(r, host, wave, step, "inconclusive", {"why": outcome["error"]})
                result.inconclusive[host] = outcome["error"]
            else:
                j.step(r, host, wave, step, "done", {"to": version})
                j.audit(r, "driver-moved", wave=wave + 1, host=host, version=version,
                        previous=r.to_image if back else r.hosts[host].get("from"))  # fmt: skip
                self.say(f"[{self.elapsed()}]   {host}: driver {version} installed, rebooted "
                         "as needed")  # fmt: skip
                done.append(host)
        return done

    def read_checks(self, hosts: list[str], health_only: bool) -> dict[str, dict]:
        return self._phase("driver-check", {h: {} for h in hosts}, True)

    def gates_of(self, host: str, line: dict, step: str, health_only: bool) -> list[Gate] | None:
        if "driver" not in line:
            return None
        r = self.rollout
        return driver_gates(line, r.hosts[host]["from"] if step == "rollback-gates"
                            else r.to_image)  # fmt: skip

    def shows(self, gate: Gate) -> bool:
        return gate.passed is not True or gate.name == "driver"

    def complete(self) -> int:
        r, j = self.rollout, self.journal
        written, problems = [], []
        for path, old in sorted((r.options.get("declarations") or {}).items()):
            try:
                write_version(Path(path), old, r.to_image)
                written.append(path)
            except (DeclarationError, OSError, SyntaxError) as exc:
                problems.append(str(exc))
        # The hosts' records go: with the new version declared they say nothing more,
        # and a stale one would hold a host on this version if the data ever went back.
        every = sorted({h for wave in r.waves for h in wave})
        forgot = self._phase("driver-forget", {h: {"forget": {"id": r.id}} for h in every}, False)
        left = sorted(h for h, line in forgot.items() if line.get("failures") or "error" in line)
        if left:
            problems.append(f"this rollout's record {DRIVER_ROLLOUT_FILE} is left on "
                            f"{', '.join(left)} (unreachable?): remove it there")  # fmt: skip
        r.status, r.reason = "completed", "; ".join(problems)
        j.save(r)
        j.audit(r, "completed", declared=written, problems=problems)
        self.release()
        where = ", ".join(written) or "nothing"
        self.say(f"[{self.elapsed()}] rollout {r.id} completed: {len(r.hosts)} host(s) on driver "
                 f"{r.to_image}; declared in {where}")  # fmt: skip
        if problems:
            self.say("NOT all done: " + "; ".join(problems) + f". Where the group data was not "
                     f"written, declare nvidia_driver.version = {r.to_image} by hand; until then "
                     "the hosts' own record keeps the deploy from moving them back")  # fmt: skip
            return EXIT_FAILED
        return EXIT_DONE

    def rollback(self, reason: str, event: str = "rollback") -> int:
        """Every host this rollout moved back on its previous driver (the same gates)."""
        r, j = self.rollout, self.journal
        r.status, r.reason = "rolling-back", reason
        j.save(r)
        j.audit(r, event, reason=reason)
        # Hosts a move began on (one refused as busy changed nothing).
        moved = [h for wave in r.waves for h in wave
                 if (j.last(r.id, h, "replace") or ("busy",))[0] != "busy"
                 and "from" in r.hosts[h]]  # fmt: skip
        self.say(f"[{self.elapsed()}] rollback of {r.id}: {len(moved)} host(s) back to their "
                 "previous driver")  # fmt: skip
        result = WaveResult({}, {}, {})
        for chunk in self._chunks(moved):
            by_version: dict[str, list[str]] = {}
            for host in chunk:
                by_version.setdefault(r.hosts[host]["from"], []).append(host)
            for version, hosts in sorted(by_version.items()):
                back = self.move(r.wave, hosts, version, "rollback", result, back=True)
                self.gate(r.wave, back, result, step="rollback-gates")
            if not result.ok:
                break  # no more hosts down than --max-unavailable, even going back
        return self.end_rollback(result, reason, moved, "the group data is unchanged")


def controller_for(journal, rollout: Rollout, say) -> Controller:
    return (DriverController if is_driver(rollout) else Controller)(journal, rollout, say)
