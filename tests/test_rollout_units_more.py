"""tfenv rollout's pure parts, to the digit: wave plans at their edges, the gates'
numbers, details and boundaries, the journal's round trip and audit log, the
default probe's helpers; and hotfix's started text without Jupyter."""

from __future__ import annotations

import codecs
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tfenv.model.spec import CanaryGates, Container
from tfenv.rollout import probe
from tfenv.rollout.gates import Gate, _p99_gate, kl_divergence, metric_gates, verdict
from tfenv.rollout.journal import Journal, Rollout
from tfenv.rollout.plan import PlanError, Target, parse_waves, plan_waves, reference_model

USER = {"name": "r", "uid": 1000, "gid": 1000}


def container(**fields: object) -> Container:
    return Container.model_validate({"image": "reg.example/ml/tf:1", "user": USER, **fields})


# -- plan ---------------------------------------------------------------------


def test_reach() -> None:
    assert Target(share=50).reach(1000) == 500
    assert Target(share=100).reach(7) == 7
    assert Target(count=3).reach(2) == 2
    assert Target().reach(5) == 0  # neither: no host


def test_plan_errors_exactly() -> None:
    with pytest.raises(PlanError) as caught:
        plan_waves([], [Target(share=100)])
    assert str(caught.value) == "no host to roll out to"
    with pytest.raises(PlanError) as caught:
        plan_waves([f"h{i}" for i in range(10)], parse_waves("1,2,5"))
    assert str(caught.value) == (
        "--waves ends at 5, which covers 5 of 10 hosts: end the list "
        "with 100% (or the number of hosts)"
    )
    with pytest.raises(PlanError) as caught:
        parse_waves("1,0")
    assert str(caught.value) == (
        "--waves '1,0': '0' is not a number of hosts (1, 2, ...) or a "
        "share (1% to 100%); for example 1,10%,30%,50%,100%"
    )


def test_a_host_named_twice_is_refused() -> None:
    with pytest.raises(PlanError) as caught:
        plan_waves(["a", "a"], [Target(share=100)])
    assert str(caught.value) == "the waves do not cover every host exactly once"


def test_reference_model_keeps_the_checkpoint_path_whole() -> None:
    c = container(checkpoints={"nfs": "ckpt", "path": "/ckptX"})
    assert reference_model(c) == "/ckptX/tfenv-canary/reference-model"


# -- gates --------------------------------------------------------------------


def test_kl_divergence_normalises_and_floors() -> None:
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence([2.0, 2.0], [1.0, 3.0]) == pytest.approx(expected, rel=1e-6)
    assert kl_divergence([0.0, 1.0], [0.5, 0.5]) == pytest.approx(math.log(2), rel=1e-6)
    assert kl_divergence([-1.0, 1.0], [0.0, 1.0]) == pytest.approx(0.0, abs=1e-6)


LIMITS = CanaryGates()
GOOD = {
    "inferences": 100,
    "errors": 0,
    "p99_ms": 10.0,
    "outputs": [0.5, 0.5],
    "gpu_memory_mib": 100.0,
}


def gates_of(baseline: dict, new: dict, limits: CanaryGates = LIMITS) -> dict[str, Gate]:
    return {g.name: g for g in metric_gates(baseline, new, limits)}


def test_error_rate_with_no_inferences_counts_one() -> None:
    gate = gates_of({**GOOD, "errors": 2, "inferences": 8}, {**GOOD, "errors": 1, "inferences": 0})[
        "error-rate"
    ]
    assert gate == Gate(
        "error-rate", False, "1.0000 (limit 0.0)", {"new": 1.0, "baseline": 0.25, "limit": 0.0}
    )
    one = gates_of({**GOOD, "errors": 1, "inferences": 1}, {**GOOD, "errors": 0})["error-rate"]
    assert one.numbers["baseline"] == 1.0 and one.passed is True
    none = gates_of({**GOOD, "errors": 3, "inferences": 0}, GOOD)["error-rate"]
    assert none.numbers["baseline"] == 3.0


def test_missing_measurements() -> None:
    no_p99 = gates_of({k: v for k, v in GOOD.items() if k != "p99_ms"}, GOOD)
    assert no_p99["p99"] == Gate("p99", None, "no latency measured")
    lost = gates_of(GOOD, {k: v for k, v in GOOD.items() if k != "p99_ms"})
    assert lost["p99"] == Gate("p99", False, "no latency measured")
    shape = gates_of(GOOD, {**GOOD, "outputs": [1.0]})["kl-divergence"]
    assert shape == Gate(
        "kl-divergence", False, "outputs missing or of another shape than the baseline's"
    )
    no_base = gates_of({**GOOD, "outputs": []}, GOOD)["kl-divergence"]
    assert no_base.passed is None
    old = gates_of({**GOOD, "gpu_memory_mib": None}, GOOD)["gpu-memory"]
    assert old == Gate("gpu-memory", True, "not measured (baseline None, new 100.0)")
    new = gates_of(GOOD, {**GOOD, "gpu_memory_mib": None})["gpu-memory"]
    assert new == Gate("gpu-memory", False, "not measured (baseline 100.0, new None)")


def test_gates_pass_at_their_limits() -> None:
    limits = CanaryGates(kl_divergence=0.0, p99_factor=1.5, gpu_memory_factor=1.5)
    gates = gates_of(GOOD, {**GOOD, "p99_ms": 15.0, "gpu_memory_mib": 150.0}, limits)
    assert gates["kl-divergence"] == Gate(
        "kl-divergence", True, "0.0000 (limit 0.0)", {"kl": 0.0, "limit": 0.0}
    )
    assert gates["gpu-memory"] == Gate(
        "gpu-memory",
        True,
        "150 MiB vs baseline 100 MiB (limit x1.5)",
        {"new_mib": 150.0, "baseline_mib": 100.0, "factor": 1.5},
    )
    assert gates["p99"].passed is True
    assert verdict(list(gates.values())) is True
    over = gates_of(GOOD, {**GOOD, "gpu_memory_mib": 150.5}, limits)["gpu-memory"]
    assert over.passed is False


def test_p99_at_the_baseline_cpu_speed() -> None:
    limits = CanaryGates(p99_cpu_relative=True, p99_factor=1.5)
    base = {"p99_ms": 10.0, "cpu_ms": 3.0, "p50_ms": 5.0}
    new = {"p99_ms": 10.0, "cpu_ms": 9.0, "p50_ms": 6.0}
    gate = _p99_gate(base, new, limits)
    assert gate.passed is True
    assert gate.numbers == {
        "new_ms": 10.0,
        "baseline_ms": 10.0,
        "p50_new_ms": 6.0,
        "p50_baseline_ms": 5.0,
        "factor": 1.5,
        "cpu_ms_new": 9.0,
        "cpu_ms_baseline": 3.0,
        "new_at_baseline_cpu_ms": 3.3333,
    }
    assert gate.detail == (
        "3.33 ms at the baseline's CPU speed (10.00 ms measured, CPU x3.00 as slow) "
        "vs baseline 10.00 ms (limit x1.5: 15.00 ms)"
    )
    at_limit = _p99_gate(base, {"p99_ms": 15.0, "cpu_ms": 3.0}, limits)
    assert at_limit.passed is True
    assert _p99_gate(base, {"p99_ms": 15.5, "cpu_ms": 3.0}, limits).passed is False


# -- journal ------------------------------------------------------------------


def rollout(**changes: Any) -> Rollout:
    fields: dict[str, Any] = {
        "id": "r-1",
        "container": "dev",
        "inventory": "inv.py",
        "to_ref": "tf:2",
        "to_image": "reg/tf@sha256:" + "a" * 64,
        "waves": [["h1"], ["h2"]],
        "hosts": {"h1": {"from": "reg/tf@sha256:" + "b" * 64}, "h2": {"declared": "tf:1"}},
        "options": {"bake": 0},
        "status": "paused",
        "wave": 1,
        "reason": "a gate",
        "owner": "me@here (pid 1)",
        "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-02T00:00:00Z",
    }
    return Rollout(**{**fields, **changes})


def test_a_rollout_reads_back_as_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    try:
        journal.create(rollout())
        assert journal.get("r-1") == rollout()
        assert journal.active("dev", "inv.py") == rollout()
        assert journal.all() == [rollout()]
        assert journal.get("r-2") is None
    finally:
        journal.close()


def test_the_audit_log_skips_a_torn_line_and_reads_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path)
    try:
        r = rollout()
        journal.audit(r, "started", note="é")
        with journal.audit_path.open("a") as log:
            log.write('{"torn\n')
        journal.audit(r, "paused")
        journal.audit(rollout(id="r-2"), "other")
        encodings: list[str] = []
        real = Path.read_text

        def read_text(self: Path, encoding: str | None = None, **kw: Any) -> str:
            encodings.append(codecs.lookup(encoding).name if encoding else "locale")
            return real(self, encoding=encoding, **kw)

        monkeypatch.setattr(Path, "read_text", read_text)
        lines = journal.audit_lines("r-1")
        assert [(x["event"], x.get("note")) for x in lines] == [("started", "é"), ("paused", None)]
        assert lines[0]["from"] == ["reg/tf@sha256:" + "b" * 64, "tf:1"]
        assert len(journal.audit_lines()) == 3
        assert encodings[0] == "utf-8"
    finally:
        journal.close()


# -- the default probe's helpers -------------------------------------------------


def test_best_round_rounds_of_one_and_four_digits() -> None:
    assert probe.best_round([5.0, 1.0, 9.0, 9.0, 9.0], 0.99) == 1.0  # five rounds of one
    assert probe.best_round([1.234567], 0.5) == 1.2346


def test_cpu_work_is_a_fixed_computation() -> None:
    value = 1
    for _ in range(probe.CPU_WORK_STEPS):
        value = (value * 31 + 7) % 1_000_003
    assert probe.cpu_work() == value == 631698


def test_gpu_memory_asks_nvidia_smi_with_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        calls.append(kw)
        return subprocess.CompletedProcess(argv, 0, stdout="10\n 20.5\n", stderr="")

    monkeypatch.setattr(probe.subprocess, "run", fake_run)
    assert probe.gpu_memory_mib() == 30.5
    assert calls == [{"capture_output": True, "text": True, "timeout": 60, "check": False}]


@pytest.mark.parametrize(
    "outcome", [OSError("no nvidia-smi"), subprocess.TimeoutExpired(["nvidia-smi"], 60), "N/A\n"]
)
def test_gpu_memory_unknown(monkeypatch: pytest.MonkeyPatch, outcome: object) -> None:
    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        if isinstance(outcome, BaseException):
            raise outcome
        return subprocess.CompletedProcess(argv, 0, stdout=outcome, stderr="")

    monkeypatch.setattr(probe.subprocess, "run", fake_run)
    assert probe.gpu_memory_mib() is None
