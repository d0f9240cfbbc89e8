"""Drive a rollout: waves of hosts, each host measured, moved and gated.

Per host: the baseline on the running (old) container, the new image pulled
by digest and the container replaced by the container operation (busy guard
included), then the gates on the new container. Every host step is written
to the journal before and after it runs, so ``resume`` after a ``kill -9``
skips what is done and never replaces a host twice (a host whose container
already carries this rollout's labels and image is not replaced again).

Remote work runs as ``pyinfra`` runs of ``deploys/rollout.py`` (one per
phase per wave, hosts of the wave in parallel); this module only decides.
The CLI (``tfenv rollout``) is a thin layer over :class:`Controller`.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tfenv import layout
from tfenv.images.lock import LockedImage, Promotion, dump_lock, read_lock
from tfenv.layout import ROLLOUT_FROM_LABEL, ROLLOUT_ID_LABEL, ROLLOUT_TO_LABEL
from tfenv.model.spec import CanaryGates
from tfenv.reconcile.check import host_error, host_failed, run_pyinfra
from tfenv.reconcile.files import write_atomic
from tfenv.reconcile.report import now_iso
from tfenv.rollout.env import LOCK_HELD, STEP_ENV
from tfenv.rollout.gates import Gate, health_gates, metric_gates, verdict
from tfenv.rollout.journal import Journal, Rollout

DEPLOY = "deploys/rollout.py"
LOG_NAME = "rollout-pyinfra.log"
# What the container operation says of a container in use (tfenv.operations.tf_container)
BUSY_MARKS = ("replacement pending", "came into use", "still in use")
NOT_STARTED = "did not start"  # the new container failed to start: the old one runs again
# Exit codes of tfenv rollout.
EXIT_DONE = 0  # completed, or waiting for `promote` between waves (--confirm)
EXIT_FAILED = 1  # a gate failed: paused on the failed hosts, or rolled back
EXIT_PAUSED = 2  # inconclusive (a host unreachable) or a busy container: resume later
EXIT_BAD_INPUT = 3

Say = Callable[[str], None]


class RolloutError(Exception):
    """Refused before anything changed (the message says what to do)."""


def new_id() -> str:
    return f"r-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@dataclass
class WaveResult:
    failed: dict[str, list[Gate]]
    inconclusive: dict[str, str]
    busy: dict[str, str]

    @property
    def ok(self) -> bool:
        return not (self.failed or self.inconclusive or self.busy)


class Controller:
    def __init__(self, journal: Journal, rollout: Rollout, say: Say) -> None:
        self.journal, self.rollout, self.say = journal, rollout, say
        self.started = time.monotonic()

    # -- remote phases -----------------------------------------------------------

    def _phase(self, phase: str, hosts: dict[str, dict], dry: bool, **extra: object) -> dict:
        """One pyinfra run of deploys/rollout.py: host -> its result line (or an
        ``error``/``failure`` line, or pyinfra's own reason when it wrote none)."""
        if not hosts:
            return {}
        step = {"phase": phase, "container": self.rollout.container, "hosts": hosts, **extra}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(step, handle)
        os.environ[STEP_ENV] = handle.name
        try:
            # Measuring phases at most --probe-parallel hosts at once: hosts that share
            # CPUs (VMs on one hypervisor, the lab) would skew each other's latencies.
            measuring = phase in ("observe", "check") and any(
                h.get("metrics") for h in hosts.values()
            )
            parallel = self.rollout.options.get("probe_parallel") if measuring else None
            run = run_pyinfra(self.rollout.inventory, DEPLOY, sorted(hosts), dry=dry,
                              collect=True, parallel=parallel)  # fmt: skip
        finally:
            os.environ.pop(STEP_ENV, None)
            os.unlink(handle.name)
        log = self.journal.state_dir / LOG_NAME
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"=== {self.rollout.id} {phase} {sorted(hosts)} exit {run.rc}\n")
            out.write(run.output + "\n")
        results: dict[str, dict] = {}
        for line in run.lines:
            name = line.get("host")
            if name in hosts:
                merged = results.setdefault(name, {})
                if "failure" in line:
                    merged.setdefault("failures", []).append(line["failure"])
                else:
                    merged.update(line)
        for name in hosts:
            tag = f"[{name}]"
            failed = host_failed(run.output, name)
            if (name not in results and (failed or dry)) or (
                failed and "failures" not in results.get(name, {})
            ):
                results.setdefault(name, {})["error"] = host_error(run.output, name, run.rc)
            if name in results:
                results[name]["said"] = [ln for ln in run.output.splitlines() if tag in ln][-20:]
        return results

    def observe(self, hosts: list[str]) -> dict[str, dict]:
        """Each host's container as it is (image, labels), nothing measured."""
        return self._phase("observe", {h: {} for h in hosts}, True)

    # -- the lock ------------------------------------------------------------------

    def lock_host(self) -> str:
        return self.rollout.waves[0][0]

    def acquire(self) -> None:
        r = self.rollout
        # Everything another control machine needs to take the rollout over.
        holder = {"id": r.id, "owner": r.owner, "started": r.created, "to": r.to_image,
                  "to_ref": r.to_ref, "container": r.container, "waves": r.waves,
                  "options": r.options}  # fmt: skip
        where = self.lock_host()
        result = self._phase("lock", {where: {}}, False, holder=holder).get(where, {})
        if not result:
            return
        why = " ".join([*result.get("failures", []), *result.get("said", []),
                        result.get("error", "")])  # fmt: skip
        if LOCK_HELD in why:
            raise RolloutError(f"another rollout of {self.rollout.container} holds the lock on "
                               f"{where}: {_holder(why)}")  # fmt: skip
        raise RolloutError(f"could not take the rollout lock on {where}: {why.strip()}")

    def release(self) -> None:
        where = self.lock_host()
        holder = {"id": self.rollout.id}
        result = self._phase("unlock", {where: {}}, False, holder=holder).get(where, {})
        if result:
            path = layout.rollout_lock(self.rollout.container)
            self.say(f"the lock on {where} was not released ({_short(result)}); remove "
                     f"{path} there by hand")  # fmt: skip

    # -- driving -----------------------------------------------------------------------

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:5.0f}s"

    def drive(self) -> int:
        """Run waves from the current one until done, a stop, or a --confirm wait."""
        r = self.rollout
        r.status = "running"
        self.journal.save(r)
        total = len(r.waves)
        while r.wave < total:
            hosts = r.waves[r.wave]
            self.say(f"[{self.elapsed()}] wave {r.wave + 1}/{total}: {', '.join(hosts)}")
            self.journal.audit(r, "wave-start", wave=r.wave + 1, hosts=hosts)
            result = self.run_wave(r.wave, hosts)
            if result.ok and r.options.get("bake"):
                result = self.bake(r.wave, hosts)
            if not result.ok:
                return self.stop(result)
            self.journal.audit(r, "wave-passed", wave=r.wave + 1, hosts=hosts)
            r.wave += 1
            self.journal.save(r)
            if r.options.get("confirm") and r.wave < total:
                r.status = "waiting"
                r.reason = f"wave {r.wave} passed; waiting for: tfenv rollout promote {r.id}"
                self.journal.save(r)
                self.journal.audit(r, "waiting", wave=r.wave)
                self.say(f"wave {r.wave}/{total} passed. Next wave when you run: "
                         f"tfenv rollout promote {r.id}")  # fmt: skip
                return EXIT_DONE
        return self.complete()

    def run_wave(self, wave: int, hosts: list[str]) -> WaveResult:
        r, j = self.rollout, self.journal
        result = WaveResult({}, {}, {})
        todo = [h for h in hosts if (j.last(r.id, h, "gates") or ("",))[0] != "passed"]
        if not todo:
            return result
        # 1. Where each host stands, and the baseline on the old container.
        for host in todo:
            j.step(r, host, wave, "baseline", "started")
        observed = self._phase("observe", {
            h: {"node": True, "metrics": j.last(r.id, h, "baseline-metrics") is None
                and j.last(r.id, h, "replace") is None}
            for h in todo
        }, True)  # fmt: skip
        to_replace, to_check = [], []
        for host in todo:
            line = observed.get(host, {})
            if "check" not in line:
                why = line.get("error") or _short(line) or "no answer"
                j.step(r, host, wave, "baseline", "inconclusive", {"error": why})
                result.inconclusive[host] = why
                continue
            check = line["check"]
            known = {key: line[key] for key in ("declared", "declared_image", "lock", "gpus",
                                                 "jupyter", "gates")}  # fmt: skip
            if _moved_here(check, r):
                r.hosts[host].update(known)  # what completion writes to the lock needs
                j.save(r)
                replaced = j.last(r.id, host, "replace")
                if replaced is None or replaced[0] == "started":  # the tool died mid-replace
                    j.step(r, host, wave, "replace", "done", {"to": r.to_image, "seen": True})
                    j.audit(r, "replaced", wave=wave + 1, host=host,
                            previous=r.hosts[host].get("from"), seen_on="resume")  # fmt: skip
                j.step(r, host, wave, "baseline", "done", {"moved": True})
                to_check.append(host)
                continue
            earlier = j.last(r.id, host, "baseline-metrics")
            baseline = earlier[1] if earlier else check.get("metrics")
            if line.get("measures") and (baseline is None or "error" in baseline):
                why = f"baseline not measured on the running container: {_short(baseline)}"
                j.step(r, host, wave, "baseline", "inconclusive", {"error": why})
                result.inconclusive[host] = why
                continue
            if not check["state"].startswith("running"):
                why = f"the container is not running before the rollout ({check['state']})"
                j.step(r, host, wave, "baseline", "inconclusive", {"error": why})
                result.inconclusive[host] = why
                continue
            r.hosts[host].update({**known, "from": check["image"]})
            j.save(r)
            if baseline is not None and not earlier:
                j.step(r, host, wave, "baseline-metrics", "done", baseline)
            j.step(r, host, wave, "baseline", "done", {"image": check["image"]})
            self.say(f"[{self.elapsed()}]   {host}: baseline on {_tag(check['image'])}: "
                     f"{_numbers(baseline)}")  # fmt: skip
            if line.get("busy"):
                self.say(f"              {host}: in use ({'; '.join(line['busy'])}); its "
                         f"replace policy: {line['policy']}")  # fmt: skip
            to_replace.append(host)
        if result.inconclusive:
            return result  # nothing of this wave is replaced while part of it is unknown
        # 2. The new image, through the container operation.
        labels = {ROLLOUT_ID_LABEL: r.id, ROLLOUT_TO_LABEL: r.to_image}
        for host in to_replace:
            j.step(r, host, wave, "replace", "started", {"from": r.hosts[host]["from"]})
        replaced = self._phase("replace", {
            h: {"image": r.to_image, "labels": {**labels, ROLLOUT_FROM_LABEL: r.hosts[h]["from"]}}
            for h in to_replace
        }, False)  # fmt: skip
        for host in to_replace:
            outcome = replaced.get(host, {})
            failures = outcome.get("failures", [])
            said = [*failures, *outcome.get("said", [])]
            busy = [ln for ln in said if any(m in ln for m in BUSY_MARKS)]
            if busy:
                why = busy[0]
                j.step(r, host, wave, "replace", "busy", {"why": why})
                result.busy[host] = why
            elif failures or any(NOT_STARTED in line for line in said):
                why = (failures or [ln for ln in said if NOT_STARTED in ln])[-1]
                j.step(r, host, wave, "replace", "failed", {"why": why})
                result.failed[host] = [Gate("replace", False, why[:300])]
            elif "error" in outcome:
                j.step(r, host, wave, "replace", "inconclusive", {"why": outcome["error"]})
                result.inconclusive[host] = outcome["error"]
            else:
                j.step(r, host, wave, "replace", "done", {"to": r.to_image})
                j.audit(r, "replaced", wave=wave + 1, host=host, previous=r.hosts[host]["from"])
                self.say(f"[{self.elapsed()}]   {host}: replaced, now on {_tag(r.to_image)}")
                to_check.append(host)
        # 3. The gates on the new container.
        self.gate(wave, to_check, result)
        return result

    def gate(self, wave: int, hosts: list[str], result: WaveResult, health_only: bool = False,
             step: str = "gates") -> None:  # fmt: skip
        r, j = self.rollout, self.journal
        if not hosts:
            return
        for host in hosts:
            j.step(r, host, wave, step, "started")
        checks = self.read_checks(hosts, health_only)
        judged = {h: self.gates_of(h, checks.get(h, {}), step, health_only) for h in hosts}
        # A latency or GPU-memory gate that failed alone is measured once more, and
        # the second measurement decides: a shared host's noise comes and goes, a
        # regression stays. Both are journaled.
        again = [h for h, gates in judged.items() if gates and _noise_only(gates)]
        if again and not health_only:
            for host in again:
                failed = [g for g in judged[host] if g.passed is False]
                j.step(r, host, wave, step, "measured-again",
                       {"gates": [g.to_json() for g in failed]})  # fmt: skip
                self.say(
                    f"[{self.elapsed()}]   {host}: {'; '.join(map(str, failed))}; "
                    "measuring once more (noise comes and goes, a regression stays)"
                )
            checks.update(self.read_checks(again, health_only))
            judged.update({h: self.gates_of(h, checks.get(h, {}), step, health_only)
                           for h in again})  # fmt: skip
        for host in hosts:
            line = checks.get(host, {})
            gates = judged[host]
            if gates is None:
                why = line.get("error") or "no answer"
                j.step(r, host, wave, step, "inconclusive", {"error": why})
                result.inconclusive[host] = why
                continue
            decided = verdict(gates)
            state = {True: "passed", False: "failed", None: "inconclusive"}[decided]
            detail = {"gates": [g.to_json() for g in gates]}
            j.step(r, host, wave, step, state, detail)
            j.audit(r, step, wave=wave + 1, host=host, decision=state, **detail)
            shown = "; ".join(str(g) for g in gates if self.shows(g))
            self.say(f"[{self.elapsed()}]   {host}: {step} {state.upper()}"
                     + (f": {shown}" if shown else ""))  # fmt: skip
            if decided is False:
                result.failed[host] = [g for g in gates if g.passed is False]
            elif decided is None:
                result.inconclusive[host] = "; ".join(str(g) for g in gates if g.passed is None)

    # What gate() reads and judges: the container's (DriverController: the driver's).

    def read_checks(self, hosts: list[str], health_only: bool) -> dict[str, dict]:
        return self._phase("check", {
            h: {"health": True, "metrics": not health_only} for h in hosts
        }, True)  # fmt: skip

    def gates_of(self, host: str, line: dict, step: str, health_only: bool) -> list[Gate] | None:
        """``host``'s gates from its reading (None: it gave none, so inconclusive)."""
        if "check" not in line:
            return None
        r, j = self.rollout, self.journal
        check, info = line["check"], r.hosts[host]
        gates = health_gates(check, line["gpus"], line["jupyter"])
        want = info["from"] if step == "rollback-gates" else r.to_image
        runs = f"runs {_tag(check['image'])}, expected {_tag(want)}"
        gates.insert(0, Gate("image", check["image"] == want, runs))
        rebuilt = host in r.options.get("rebuilt", ())  # its baseline stayed elsewhere
        if not health_only and not rebuilt and line.get("measures"):
            earlier = j.last(r.id, host, "baseline-metrics")
            limits = CanaryGates(**line["gates"])
            gates += metric_gates(earlier[1] if earlier else None, check.get("metrics"),
                                  limits)  # fmt: skip
        return gates

    def shows(self, gate: Gate) -> bool:
        """Whether the progress line names ``gate`` (all are journaled and audited)."""
        return bool(gate.numbers) or gate.passed is not True

    def bake(self, wave: int, hosts: list[str]) -> WaveResult:
        seconds = int(self.rollout.options["bake"])
        self.say(f"[{self.elapsed()}] baking wave {wave + 1} for {seconds} s, then its gates again")
        time.sleep(seconds)
        result = WaveResult({}, {}, {})
        self.gate(wave, hosts, result, step="bake-gates")
        return result

    def stop(self, result: WaveResult) -> int:
        r, j = self.rollout, self.journal
        if result.failed:
            lines = [f"  {host}: {g}" for host, gates in result.failed.items() for g in gates]
            j.audit(r, "gate-failed", wave=r.wave + 1, hosts=sorted(result.failed))
            if r.options.get("on_failure") == "rollback":
                self.say("gate(s) FAILED:\n" + "\n".join(lines) + "\nrolling back (--on-failure "
                         "rollback)")  # fmt: skip
                self.rollback(reason=f"gate failed on {', '.join(sorted(result.failed))}")
                return EXIT_FAILED
            r.status, r.reason = (
                "paused",
                "gate failed: "
                + "; ".join(
                    f"{h}: {', '.join(g.name for g in gates)}" for h, gates in result.failed.items()
                ),
            )
            j.save(r)
            j.audit(r, "paused", reason=r.reason)
            self.say("gate(s) FAILED:\n" + "\n".join(lines) + "\n"
                     f"Rollout {r.id} is paused; the failed host(s) stay on the new image for "
                     f"inspection. Then either:\n  tfenv rollout rollback {r.id}\n"
                     f"  tfenv rollout resume {r.id}")  # fmt: skip
            return EXIT_FAILED
        why = {**{h: f"inconclusive: {w}" for h, w in result.inconclusive.items()},
               **{h: f"in use: {w}" for h, w in result.busy.items()}}  # fmt: skip
        r.status = "paused"
        r.reason = "; ".join(f"{h}: {w}" for h, w in sorted(why.items()))[:1000]
        j.save(r)
        j.audit(r, "paused", reason=r.reason)
        self.say("\n".join(f"  {h}: {w}" for h, w in sorted(why.items())) + "\n"
                 f"Rollout {r.id} is paused (nothing rolled back). Once the host(s) answer or are "
                 f"idle: tfenv rollout resume {r.id}")  # fmt: skip
        return EXIT_PAUSED

    def complete(self) -> int:
        r, j = self.rollout, self.journal
        if not r.to_ref or "digest" not in r.options:
            # Rebuilt from the hosts without its lock file: the tag it went to is unknown.
            self.say(f"the lock file is NOT advanced: rollout {r.id} was rebuilt without its "
                     "plan (the lock file on its canary host was gone); pin the new tag with "
                     "tfenv lock and declare it in the group data")  # fmt: skip
        else:
            self.write_lock()
        r.status, r.reason = "completed", ""
        j.save(r)
        j.audit(r, "completed", lock=sorted({h["lock"] for h in r.hosts.values() if "lock" in h}))
        self.release()
        self.say(f"[{self.elapsed()}] rollout {r.id} completed: {len(r.hosts)} host(s) on "
                 f"{r.to_ref} ({r.to_image.rsplit('@', 1)[1]}); the lock holds it now")  # fmt: skip
        return EXIT_DONE

    def write_lock(self) -> None:
        r = self.rollout
        paths = {h["lock"] for h in r.hosts.values() if "lock" in h}
        for path in sorted(paths):
            lock, issues = read_lock(Path(path))
            if issues:
                raise RolloutError(f"{path}: the lock cannot be read to record the rollout")
            images = dict(lock.images)
            images[r.to_ref] = LockedImage(r.to_ref, r.options["digest"],
                                           r.options.get("platform_digest"))  # fmt: skip
            promoted = dict(lock.promoted)
            for info in r.hosts.values():
                declared = info.get("declared_image")
                if info.get("lock") != path or not declared:
                    continue
                if declared == r.to_ref:
                    promoted.pop(declared, None)
                else:
                    promoted[declared] = Promotion(r.to_ref, r.id)
            write_atomic(Path(path), dump_lock(images, promoted))

    def rollback(self, reason: str, event: str = "rollback") -> int:
        """Every host this rollout moved back on its previous image (gates: health only)."""
        r, j = self.rollout, self.journal
        r.status, r.reason = "rolling-back", reason
        j.save(r)
        j.audit(r, event, reason=reason)
        every = [h for wave in r.waves for h in wave]
        self.say(f"[{self.elapsed()}] rollback of {r.id}: looking at {len(every)} host(s)")
        observed = self.observe(every)
        moved, unknown = [], {}
        for host in every:
            line = observed.get(host, {})
            if "check" not in line:
                started = j.last(r.id, host, "replace")
                if started:  # it may have been moved: it must be seen
                    unknown[host] = line.get("error") or "no answer"
                continue
            if _moved_here(line["check"], r) or (
                line["check"]["labels"].get(ROLLOUT_ID_LABEL) == r.id
                and line["check"]["image"] != r.hosts[host].get("from")
            ):
                moved.append(host)
        back = {h: {"image": r.hosts[h]["from"], "labels": {}} for h in moved}
        for host in moved:
            j.step(r, host, r.wave, "rollback", "started", {"to": r.hosts[host]["from"]})
        replaced = self._phase("replace", back, False)
        result = WaveResult({}, dict(unknown), {})
        done = []
        for host in moved:
            outcome = replaced.get(host, {})
            if outcome.get("failures") or "error" in outcome:
                why = (outcome.get("failures") or [outcome.get("error")])[-1]
                j.step(r, host, r.wave, "rollback", "failed", {"why": why})
                result.inconclusive[host] = why
            else:
                j.step(r, host, r.wave, "rollback", "done", {})
                self.say(f"[{self.elapsed()}]   {host}: back on {_tag(r.hosts[host]['from'])}")
                done.append(host)
        self.gate(r.wave, done, result, health_only=True, step="rollback-gates")
        return self.end_rollback(result, reason, done, "the lock is unchanged")

    def end_rollback(self, result: WaveResult, reason: str, done: list[str],
                     unchanged: str) -> int:  # fmt: skip
        """Paused if a host could not be put back (``rollback`` again later), else aborted."""
        r, j = self.rollout, self.journal
        if not result.ok:
            bad = {**result.inconclusive, **{h: "gate failed" for h in result.failed},
                   **{h: f"in use: {w}" for h, w in result.busy.items()}}  # fmt: skip
            r.status = "paused"
            r.reason = "rollback incomplete: " + "; ".join(f"{h}: {w}" for h, w in bad.items())
            j.save(r)
            j.audit(r, "rollback-incomplete", reason=r.reason)
            self.say(f"{r.reason}\nOnce the host(s) answer: tfenv rollout rollback {r.id}")
            return EXIT_PAUSED
        r.status = "aborted"
        j.save(r)
        j.audit(r, "aborted", reason=reason, hosts=done)
        self.release()
        self.say(f"[{self.elapsed()}] rollout {r.id} rolled back ({len(done)} host(s)) and "
                 f"aborted; {unchanged}")  # fmt: skip
        return EXIT_DONE


NOISY_GATES = frozenset({"p99", "gpu-memory"})  # measurements a busy host can spoil


def _noise_only(gates: list[Gate]) -> bool:
    """Whether ``gates`` failed, and only on measurements that noise can spoil."""
    failed = {g.name for g in gates if g.passed is False}
    return bool(failed) and failed <= NOISY_GATES


def _moved_here(check: dict, rollout: Rollout) -> bool:
    labels = check.get("labels", {})
    return labels.get(ROLLOUT_ID_LABEL) == rollout.id and check.get("image") == rollout.to_image


def _holder(text: str) -> str:
    start = text.find("{", text.find(LOCK_HELD))
    try:
        holder, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return text.strip()[:300]
    age = ""
    try:
        since = datetime.strptime(holder["started"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        age = f", for {int((datetime.now(UTC) - since).total_seconds())} s"
    except (KeyError, ValueError):
        pass
    return f"rollout {holder.get('id')} by {holder.get('owner')}{age} (to {holder.get('to')})"


def _tag(pinned: str) -> str:
    name, _, digest = pinned.partition("@")
    return f"{name.rsplit('/', 1)[-1]}@{digest[7:19]}" if digest else pinned


def _numbers(metrics: dict | None) -> str:
    if not metrics:
        return "no metric gates"
    if "error" in metrics:
        return f"probe error: {metrics['error']}"
    return (f"p50 {metrics.get('p50_ms')} ms, p99 {metrics.get('p99_ms')} ms, "
            f"errors {metrics.get('errors')}/{metrics.get('inferences')}, "
            f"GPU memory {metrics.get('gpu_memory_mib')} MiB")  # fmt: skip


def _short(value: object) -> str:
    return json.dumps(value, sort_keys=True)[:300] if value else ""


def rebuild(rollout_id: str, inventory: str, hosts: list[str], journal: Journal,
            say: Say) -> Rollout:  # fmt: skip
    """The rollout ``rollout_id`` from what the hosts tell (no journal here): its lock
    file on the canary host (target, plan, options) and the labels of the containers
    it moved (previous digests). Moved hosts are gated again on health only: their
    baselines stayed in the other machine's journal."""
    probe = Rollout(id=rollout_id, container="", inventory=inventory, to_ref="", to_image="",
                    waves=[hosts], hosts={h: {} for h in hosts}, options={})  # fmt: skip
    found = Controller(journal, probe, say)._phase("find", {h: {} for h in hosts}, True)
    holder: dict = {}
    moved: dict[str, dict] = {}
    container = ""
    for host, line in sorted(found.items()):
        for text in (line.get("locks") or {}).values():
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if data.get("id") == rollout_id:
                holder = {**data, "lock_host": host}
        for name, labels in (line.get("labels") or {}).items():
            if labels.get(ROLLOUT_ID_LABEL) == rollout_id:
                container = name
                moved[host] = labels
    if not holder and not moved:
        unreachable = sorted(h for h, line in found.items() if "error" in line)
        silent = f" that answered ({len(unreachable)} did not)" if unreachable else ""
        raise RolloutError(
            f"rollout {rollout_id} is neither in {journal.state_dir} nor on any host of "
            f"{inventory}{silent}"
        )
    if holder.get("options", {}).get("kind") == "driver":
        raise RolloutError(
            f"rollout {rollout_id} is a driver rollout (its lock is on {holder['lock_host']}, "
            f"held by {holder.get('owner')}): drive it from the machine that holds its journal "
            "(--state-dir), or copy that directory here"
        )
    to_image = holder.get("to") or next(iter(moved.values()))[ROLLOUT_TO_LABEL]
    waves = holder.get("waves") or [sorted(moved)]
    info = {h: {} for wave in waves for h in wave}
    for host, labels in moved.items():
        info.setdefault(host, {})["from"] = labels[ROLLOUT_FROM_LABEL]
    where = f"the lock on {holder['lock_host']}" if holder else "no lock file"
    rollout = Rollout(
        id=rollout_id, container=holder.get("container") or container, inventory=inventory,
        to_ref=holder.get("to_ref", ""), to_image=to_image, waves=waves, hosts=info,
        options={**holder.get("options", {}), "rebuilt": sorted(moved)}, status="paused",
        wave=0,  # from the start: the moved hosts are gated again (health), never replaced
        reason=f"rebuilt from the hosts: {len(moved)} moved container(s), {where}",
        owner=holder.get("owner", "unknown"), created=holder.get("started", now_iso()),
    )  # fmt: skip
    journal.create(rollout)
    for host in moved:
        journal.step(rollout, host, 0, "replace", "done", {"rebuilt": True})
    journal.audit(rollout, "rebuilt", hosts=sorted(moved), lock=where)
    say(f"rollout {rollout_id}: {rollout.reason}")
    return rollout
