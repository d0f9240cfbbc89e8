"""tfenv rollout's pure core: the wave plan, the gates, the lock's promotions, the
probe's percentile, the canary fact's parsing and command, the journal, the deploy's
"a rollout put it there" rule and the report's rollout-in-progress status."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import stat
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import StringCommand

from tfenv.containers.desired import DesiredContainer, desired_container
from tfenv.facts.canary import END, PROBE_SCRIPT, CanaryCheck, parse
from tfenv.facts.tf_node import ObservedContainer
from tfenv.images.lock import LockedImage, Promotion, dump_lock, read_lock
from tfenv.layout import ROLLOUT_FROM_LABEL, ROLLOUT_ID_LABEL, ROLLOUT_LABELS, ROLLOUT_TO_LABEL
from tfenv.model.spec import CanaryGates, Container
from tfenv.operations.tf_container import rollout_in_progress
from tfenv.reconcile.report import EXIT_CLEAN, EXIT_DRIFT, HostResult, Item, Report
from tfenv.rollout import probe as probe_script
from tfenv.rollout.gates import Gate, health_gates, kl_divergence, metric_gates, verdict
from tfenv.rollout.journal import Journal, JournalError, Rollout, owner
from tfenv.rollout.plan import (
    PlanError,
    Target,
    measures,
    order_hosts,
    parse_duration,
    parse_waves,
    plan_waves,
    reference_model,
)
from tfenv.rollout.probe import percentile

ROLLOUT_ID = "r-20261127-101500-1a2b"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
NEW_IMAGE = "reg/tf@" + DIGEST_A
OLD_IMAGE = "reg/tf@" + DIGEST_B
USER = {"name": "r", "uid": 1000, "gid": 1000}


def container(**fields: object) -> Container:
    return Container.model_validate({"image": "reg.example/ml/tf:1", "user": USER, **fields})


def hosts(count: int) -> list[str]:
    return [f"h{i:02d}" for i in range(count)]


# --- plan: --waves and --bake ---------------------------------------------------------


def test_parse_waves_counts_and_shares() -> None:
    assert parse_waves("1,10%,30%,50%,100%") == [
        Target(count=1),
        Target(share=10),
        Target(share=30),
        Target(share=50),
        Target(share=100),
    ]
    assert parse_waves(" 2 , 100% ") == [Target(count=2), Target(share=100)]
    assert [str(t) for t in parse_waves("3,25%")] == ["3", "25%"]


@pytest.mark.parametrize("text", ["0", "101%", "x", "", "1,,100%", "1.5", "%", "10%%", "-1"])
def test_parse_waves_rejects_bad_entries(text: str) -> None:
    with pytest.raises(PlanError, match="--waves"):
        parse_waves(text)


def test_target_reach_rounds_shares_up_and_caps_counts() -> None:
    assert Target(share=10).reach(5) == 1  # 0.5 rounded up
    assert Target(share=30).reach(10) == 3
    assert Target(share=50).reach(5) == 3
    assert Target(share=100).reach(7) == 7
    assert Target(count=4).reach(3) == 3
    assert Target(count=2).reach(3) == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), (" 5m ", 300)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1d", "-1", "", "m", "1.5h", "15 m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(PlanError, match="--bake"):
        parse_duration(text)


def test_order_hosts_puts_the_canary_group_first_then_by_name() -> None:
    groups = {
        "b": ("gpu",),
        "a": (),
        "z": ("canary",),
        "c": ("gpu", "canary"),
    }
    assert order_hosts(groups) == ["c", "z", "a", "b"]
    assert order_hosts({}) == []


def test_default_waves_on_five_hosts_are_five_waves_of_one() -> None:
    waves = plan_waves(hosts(5), parse_waves("1,10%,30%,50%,100%"))
    assert waves == [["h00"], ["h01"], ["h02"], ["h03"], ["h04"]]


def test_default_waves_on_ten_hosts() -> None:
    # reach: 1; 10% -> 1, raised to 2; 30% -> 3; 50% -> 5; 100% -> 10
    waves = plan_waves(hosts(10), parse_waves("1,10%,30%,50%,100%"))
    assert waves == [
        ["h00"],
        ["h01"],
        ["h02"],
        ["h03", "h04"],
        ["h05", "h06", "h07", "h08", "h09"],
    ]


def test_default_waves_on_a_hundred_hosts() -> None:
    waves = plan_waves(hosts(100), parse_waves("1,10%,30%,50%,100%"))
    assert [len(w) for w in waves] == [1, 9, 20, 20, 50]
    assert [h for w in waves for h in w] == hosts(100)


def test_one_host_is_one_wave() -> None:
    assert plan_waves(["only"], parse_waves("1,10%,30%,50%,100%")) == [["only"]]


def test_entries_after_every_host_is_covered_are_dropped() -> None:
    assert plan_waves(hosts(3), parse_waves("5,100%")) == [["h00", "h01", "h02"]]
    assert plan_waves(hosts(3), parse_waves("1,100%,100%")) == [["h00"], ["h01", "h02"]]


def test_every_wave_adds_a_host_even_when_its_target_does_not() -> None:
    assert plan_waves(hosts(4), parse_waves("3,2,1,100%")) == [
        ["h00", "h01", "h02"],
        ["h03"],
    ]
    assert plan_waves(hosts(3), parse_waves("1,1,1")) == [["h00"], ["h01"], ["h02"]]


def test_waves_keep_the_given_order() -> None:
    ordered = order_hosts({"b": (), "a": (), "z": ("canary",)})
    assert plan_waves(ordered, parse_waves("1,100%")) == [["z"], ["a", "b"]]


def test_a_plan_that_does_not_reach_every_host_is_an_error() -> None:
    with pytest.raises(PlanError, match="covers 2 of 4") as caught:
        plan_waves(hosts(4), parse_waves("1,50%"))
    assert "ends at 50%" in str(caught.value)
    with pytest.raises(PlanError, match="ends at nothing, which covers 0 of 2"):
        plan_waves(hosts(2), [])
    with pytest.raises(PlanError, match="no host"):
        plan_waves([], parse_waves("100%"))


def test_reference_model_and_measures() -> None:
    model = container(canary={"model": "/models/ref"})
    assert reference_model(model) == "/models/ref"
    assert measures(model) is True
    with_checkpoints = container(checkpoints={"nfs": "ckpt", "path": "/ckpt"})
    assert reference_model(with_checkpoints) == "/ckpt/tfenv-canary/reference-model"
    assert measures(with_checkpoints) is True
    bare = container()
    assert reference_model(bare) is None
    assert measures(bare) is False
    own_probe = container(canary={"probe": ["python3", "/opt/probe.py"]})
    assert reference_model(own_probe) is None
    assert measures(own_probe) is True


# --- gates ---------------------------------------------------------------------------


def test_kl_divergence() -> None:
    assert kl_divergence([0.7, 0.2, 0.1], [0.7, 0.2, 0.1]) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence([2, 2], [1, 1]) == pytest.approx(0.0, abs=1e-12)  # normalised
    shifted = kl_divergence([0.7, 0.2, 0.1], [0.1, 0.7, 0.2])
    expected = 0.7 * math.log(7) + 0.2 * math.log(0.2 / 0.7) + 0.1 * math.log(0.5)
    assert shifted == pytest.approx(expected, rel=1e-6)
    assert shifted > 1.0
    # a class the new model never predicts: large, but finite (EPSILON floor)
    never = kl_divergence([0.5, 0.5], [1.0, 0.0])
    assert never == pytest.approx(0.5 * math.log(0.5 / 1e-9) + 0.5 * math.log(0.5), rel=1e-6)
    assert 5 < never < math.inf
    with pytest.raises(ValueError):
        kl_divergence([0.5, 0.5], [1.0])


def healthy_check() -> dict:
    return {
        "state": "running healthy",
        "health": {"sshd": "ok", "jupyter": "ok", "gpus": 2, "tensorflow": "ok"},
        "checkpoints": "ok",
        "log_lines": [],
        "output": [],
    }


def by_name(gates: list[Gate]) -> dict[str, bool | None]:
    return {g.name: g.passed for g in gates}


def failed(gates: list[Gate]) -> list[str]:
    return [g.name for g in gates if g.passed is not True]


def test_health_gates_all_pass() -> None:
    gates = health_gates(healthy_check(), gpus=2, jupyter=True)
    assert by_name(gates) == {
        "running-healthy": True,
        "sshd": True,
        "jupyter": True,
        "gpus": True,
        "tensorflow-op": True,
        "checkpoints-writable": True,
        "log-clean": True,
    }
    assert verdict(gates) is True


def test_health_gates_leave_out_what_is_not_declared() -> None:
    check = healthy_check()
    del check["checkpoints"]
    gates = health_gates(check, gpus=None, jupyter=False)
    assert [g.name for g in gates] == ["running-healthy", "sshd", "tensorflow-op", "log-clean"]
    assert verdict(gates) is True


def test_running_without_a_healthcheck_passes() -> None:
    check = {**healthy_check(), "state": "running"}
    assert by_name(health_gates(check, 2, True))["running-healthy"] is True


def probe(**changes: object) -> dict:
    return {"health": {"sshd": "ok", "jupyter": "ok", "gpus": 2, "tensorflow": "ok", **changes}}


@pytest.mark.parametrize(
    ("change", "gate"),
    [
        ({"state": "running unhealthy"}, "running-healthy"),
        ({"state": "exited"}, "running-healthy"),
        ({"state": "absent"}, "running-healthy"),
        (probe(sshd="error: ConnectionRefusedError: [Errno 111]"), "sshd"),
        (probe(jupyter="answers WITHOUT the token"), "jupyter"),
        (probe(gpus=1), "gpus"),
        (probe(tensorflow="No registered 'MatMul' OpKernel"), "tensorflow-op"),
        ({"checkpoints": "sh: can't create: Permission denied"}, "checkpoints-writable"),
        ({"log_lines": ["Traceback (most recent call last):"]}, "log-clean"),
    ],
)
def test_each_health_failure_fails_its_gate_only(change: dict, gate: str) -> None:
    gates = health_gates({**healthy_check(), **change}, gpus=2, jupyter=True)
    assert failed(gates) == [gate]
    assert by_name(gates)[gate] is False
    assert verdict(gates) is False


def test_gpu_and_log_gates_carry_their_numbers() -> None:
    check = healthy_check()
    check["health"]["gpus"] = 1
    check["log_lines"] = ["Traceback (most recent call last):", "  File x"]
    gates = {g.name: g for g in health_gates(check, gpus=2, jupyter=True)}
    assert gates["gpus"].numbers == {"visible": 1, "declared": 2}
    assert gates["gpus"].detail == "1 visible inside, 2 declared"
    assert gates["log-clean"].numbers == {"lines": 2}
    assert gates["log-clean"].detail == "Traceback (most recent call last):"


def test_no_in_container_probe_is_a_failed_gate() -> None:
    check = {**healthy_check(), "health": None, "output": ["a", "b", "c", "exec failed"]}
    gates = health_gates(check, gpus=2, jupyter=True)
    assert [g.name for g in gates] == ["running-healthy", "in-container-probe"]
    assert gates[1].passed is False
    assert gates[1].detail == "did not run (b / c / exec failed)"
    assert verdict(gates) is False


def test_absent_container_reads_as_no_such_container() -> None:
    gates = health_gates({"state": "", "health": None}, gpus=None, jupyter=False)
    assert gates[0] == Gate("running-healthy", False, "docker: no such container")
    assert gates[1].detail == "did not run (no output)"


def metrics(**changes: object) -> dict:
    return {
        "p50_ms": 10.0,
        "p99_ms": 20.0,
        "errors": 0,
        "inferences": 50,
        "gpu_memory_mib": 1000.0,
        "outputs": [0.7, 0.2, 0.1],
        **changes,
    }


LIMITS = CanaryGates()


def test_canary_gate_defaults() -> None:
    assert (LIMITS.p99_factor, LIMITS.error_rate) == (1.5, 0.0)
    assert (LIMITS.kl_divergence, LIMITS.gpu_memory_factor) == (0.05, 1.2)


def test_metric_gates_pass() -> None:
    gates = metric_gates(metrics(), metrics(p99_ms=22.0, gpu_memory_mib=1100.0), LIMITS)
    assert by_name(gates) == {
        "error-rate": True,
        "p99": True,
        "kl-divergence": True,
        "gpu-memory": True,
    }
    assert verdict(gates) is True


def test_a_slow_image_fails_only_the_p99_gate() -> None:
    gates = metric_gates(metrics(), metrics(p50_ms=12.0, p99_ms=40.0), LIMITS)
    assert failed(gates) == ["p99"]
    p99 = next(g for g in gates if g.name == "p99")
    assert p99.passed is False
    assert p99.numbers == {
        "new_ms": 40.0,
        "baseline_ms": 20.0,
        "p50_new_ms": 12.0,
        "p50_baseline_ms": 10.0,
        "factor": 1.5,
    }
    assert "30.00 ms" in p99.detail  # the bound: 20 x 1.5


def test_p99_bound_is_inclusive() -> None:
    assert failed(metric_gates(metrics(), metrics(p99_ms=30.0), LIMITS)) == []
    assert failed(metric_gates(metrics(), metrics(p99_ms=30.01), LIMITS)) == ["p99"]


CPU_RELATIVE = CanaryGates(p99_cpu_relative=True)


def test_a_host_three_times_slower_for_the_new_reading_does_not_fail_a_good_image() -> None:
    # The whole host (a busy hypervisor) was 3x slower: so were p99 and cpu_ms.
    slower = metrics(p99_ms=60.0, cpu_ms=3.0)
    assert failed(metric_gates(metrics(cpu_ms=1.0), slower, LIMITS)) == ["p99"]  # the default
    gates = metric_gates(metrics(cpu_ms=1.0), slower, CPU_RELATIVE)
    assert failed(gates) == []
    p99 = next(g for g in gates if g.name == "p99")
    assert p99.numbers["new_at_baseline_cpu_ms"] == 20.0
    assert (p99.numbers["cpu_ms_new"], p99.numbers["cpu_ms_baseline"]) == (3.0, 1.0)
    assert "20.00 ms at the baseline's CPU speed (60.00 ms measured, CPU x3.00 as slow)" in (
        p99.detail
    )


def test_a_regression_read_on_a_quieter_host_than_its_baseline_still_fails() -> None:
    # Baseline read while the host was 3x slower (60 ms); the new image is 2x slower
    # but read on a quiet host (40 ms): only the CPU-relative gate sees it.
    baseline, new = metrics(p99_ms=60.0, cpu_ms=3.0), metrics(p99_ms=40.0, cpu_ms=1.0)
    assert failed(metric_gates(baseline, new, LIMITS)) == []
    gates = metric_gates(baseline, new, CPU_RELATIVE)
    assert failed(gates) == ["p99"]
    assert next(g for g in gates if g.name == "p99").numbers["new_at_baseline_cpu_ms"] == 120.0


def test_cpu_relative_needs_cpu_ms_on_both_sides() -> None:
    # A custom probe without cpu_ms (or an older baseline): plain p99 comparison.
    for baseline, new in ((metrics(), metrics(cpu_ms=3.0)), (metrics(cpu_ms=1.0), metrics())):
        gates = metric_gates(baseline, new | {"p99_ms": 40.0}, CPU_RELATIVE)
        p99 = next(g for g in gates if g.name == "p99")
        assert p99.passed is False and "new_at_baseline_cpu_ms" not in p99.numbers
    assert CanaryGates().p99_cpu_relative is False


def test_the_probe_times_a_fixed_cpu_work() -> None:
    assert probe_script.cpu_work() == probe_script.cpu_work()  # the same work every time


def test_the_best_round_leaves_a_noisy_moment_out() -> None:
    quiet, noisy = [1.0] * 9 + [2.0], [5.0] * 10
    values = noisy + quiet + noisy + [3.0] * 70  # 100 values: ten rounds of ten
    assert probe_script.best_round(values, 0.50) == 1.0
    assert probe_script.best_round(values, 0.99) == 2.0  # the quiet round's worst
    assert probe_script.best_round([4.0, 2.0], 0.50) == 2.0  # fewer values than rounds


def test_a_drifting_output_fails_only_the_kl_gate() -> None:
    gates = metric_gates(metrics(), metrics(outputs=[0.1, 0.7, 0.2]), LIMITS)
    assert failed(gates) == ["kl-divergence"]
    kl = next(g for g in gates if g.name == "kl-divergence")
    assert kl.numbers["kl"] > 1.0
    assert kl.numbers["limit"] == 0.05


def test_errors_fail_the_error_rate_gate() -> None:
    gates = metric_gates(metrics(), metrics(errors=1), LIMITS)
    assert failed(gates) == ["error-rate"]
    rate = next(g for g in gates if g.name == "error-rate")
    assert rate.numbers == {"new": 1 / 50, "baseline": 0.0, "limit": 0.0}
    loose = CanaryGates(error_rate=0.05)
    assert failed(metric_gates(metrics(), metrics(errors=1), loose)) == []


def test_no_baseline_is_a_single_inconclusive_gate() -> None:
    gates = metric_gates(None, metrics(), LIMITS)
    assert gates == [Gate("probe", None, "no baseline metrics")]
    assert verdict(gates) is None
    assert metric_gates(metrics(), None, LIMITS) == [
        Gate("probe", None, "no new container's metrics")
    ]


def test_a_failed_baseline_probe_is_inconclusive() -> None:
    gates = metric_gates({"error": "OSError: no model"}, metrics(), LIMITS)
    assert len(gates) == 1
    assert (gates[0].name, gates[0].passed) == ("probe", None)
    assert "OSError: no model" in gates[0].detail


def test_a_failed_probe_on_the_new_image_fails() -> None:
    gates = metric_gates(metrics(), {"error": "NotFoundError: op"}, LIMITS)
    assert len(gates) == 1
    assert (gates[0].name, gates[0].passed) == ("probe", False)
    assert "NotFoundError: op" in gates[0].detail
    assert verdict(gates) is False


def test_gpu_memory_gate() -> None:
    none = {"gpu_memory_mib": None}
    assert by_name(metric_gates(metrics(**none), metrics(**none), LIMITS))["gpu-memory"] is True
    assert by_name(metric_gates(metrics(), metrics(**none), LIMITS))["gpu-memory"] is False
    assert by_name(metric_gates(metrics(**none), metrics(), LIMITS))["gpu-memory"] is True
    more = metric_gates(metrics(), metrics(gpu_memory_mib=1300.0), LIMITS)
    assert failed(more) == ["gpu-memory"]
    memory = next(g for g in more if g.name == "gpu-memory")
    assert memory.numbers == {"new_mib": 1300.0, "baseline_mib": 1000.0, "factor": 1.2}


def test_missing_latency_and_outputs() -> None:
    no_p99 = metric_gates(metrics(), metrics(p99_ms=None), LIMITS)
    assert by_name(no_p99)["p99"] is False
    no_baseline_p99 = metric_gates(metrics(p99_ms=None), metrics(), LIMITS)
    assert by_name(no_baseline_p99)["p99"] is None
    other_shape = metric_gates(metrics(), metrics(outputs=[0.5, 0.5]), LIMITS)
    assert by_name(other_shape)["kl-divergence"] is False
    no_baseline_outputs = metric_gates(metrics(outputs=None), metrics(), LIMITS)
    assert by_name(no_baseline_outputs)["kl-divergence"] is None
    assert verdict(no_baseline_outputs) is None


def test_verdict_false_beats_none_beats_true() -> None:
    ok, unsure, bad = Gate("a", True, ""), Gate("b", None, ""), Gate("c", False, "")
    assert verdict([ok, unsure, bad]) is False
    assert verdict([bad, unsure]) is False
    assert verdict([ok, unsure]) is None
    assert verdict([ok, ok]) is True
    assert verdict([]) is True


def test_gate_text_and_json() -> None:
    gate = Gate("p99", False, "slow", {"new_ms": 40.0})
    assert str(gate) == "p99: FAIL: slow"
    assert str(Gate("probe", None, "x")) == "probe: INCONCLUSIVE: x"
    assert gate.to_json() == {
        "name": "p99",
        "passed": False,
        "detail": "slow",
        "numbers": {"new_ms": 40.0},
    }


# --- the image lock's promoted: section -----------------------------------------------

REF_A = "reg.test:5000/ml/tf:2.17.0"
REF_B = "reg.test:5000/ml/tf:2.18.0"
IMAGES = (
    f"version: 1\nimages:\n  {REF_A}:\n    digest: {DIGEST_A}\n  {REF_B}:\n    digest: {DIGEST_B}\n"
)


def read(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "images.lock.yaml"
    path.write_text(text, encoding="utf-8")
    return read_lock(path)


def test_a_promoted_image_resolves_to_its_target(tmp_path: Path) -> None:
    text = IMAGES + f"promoted:\n  {REF_A}:\n    to: {REF_B}\n    rollout: {ROLLOUT_ID}\n"
    lock, issues = read(tmp_path, text)
    assert issues == []
    assert lock.promoted == {REF_A: Promotion(REF_B, ROLLOUT_ID)}
    assert lock.effective(REF_A) == REF_B
    assert lock.resolve(REF_A) == LockedImage(REF_B, DIGEST_B)
    assert lock.effective(REF_B) == REF_B
    assert lock.resolve(REF_B) == LockedImage(REF_B, DIGEST_B)
    assert lock.get(REF_A) == LockedImage(REF_A, DIGEST_A)  # still pinned itself
    assert lock.resolve("reg.test:5000/ml/tf:9.9") is None


def test_dump_lock_round_trips_promotions(tmp_path: Path) -> None:
    images = {REF_A: LockedImage(REF_A, DIGEST_A), REF_B: LockedImage(REF_B, DIGEST_B)}
    promoted = {REF_A: Promotion(REF_B, ROLLOUT_ID)}
    text = dump_lock(images, promoted)
    assert "promoted:" in text
    lock, issues = read(tmp_path, text)
    assert issues == []
    assert lock.images == images
    assert lock.promoted == promoted
    assert "promoted" not in dump_lock(images)
    assert read(tmp_path, dump_lock(images))[0].promoted == {}


def promotion_issues(tmp_path: Path, promoted: str) -> tuple[dict, list[tuple[str, str]]]:
    lock, issues = read(tmp_path, IMAGES + promoted)
    assert set(lock.images) == {REF_A, REF_B}  # the images themselves are still read
    return lock.promoted, [(i.field, i.expected) for i in issues]


def test_a_promotion_to_an_image_not_pinned_is_an_issue(tmp_path: Path) -> None:
    other = "reg.test:5000/ml/tf:9.9"
    promoted, issues = promotion_issues(
        tmp_path, f"promoted:\n  {REF_A}:\n    to: {other}\n    rollout: {ROLLOUT_ID}\n"
    )
    assert promoted == {}
    assert issues == [(f"promoted[{REF_A!r}].to", "a name:tag pinned under images")]


def test_a_promotion_to_a_promoted_image_is_an_issue(tmp_path: Path) -> None:
    promoted, issues = promotion_issues(
        tmp_path,
        f"promoted:\n  {REF_A}:\n    to: {REF_B}\n    rollout: {ROLLOUT_ID}\n"
        f"  {REF_B}:\n    to: {REF_A}\n    rollout: {ROLLOUT_ID}\n",
    )
    assert promoted == {}
    assert issues == [
        (f"promoted[{REF_A!r}].to", "an image that is not promoted itself"),
        (f"promoted[{REF_B!r}].to", "an image that is not promoted itself"),
    ]


@pytest.mark.parametrize("rollout", ["r-1", "20261127-101500-1a2b", "r-20261127-101500-1A2B"])
def test_a_bad_rollout_id_is_an_issue(tmp_path: Path, rollout: str) -> None:
    promoted, issues = promotion_issues(
        tmp_path, f"promoted:\n  {REF_A}:\n    to: {REF_B}\n    rollout: {rollout}\n"
    )
    assert promoted == {}
    assert issues == [(f"promoted[{REF_A!r}].rollout", "a rollout id")]


@pytest.mark.parametrize(
    "entry",
    [
        f"    to: {REF_B}\n    rollout: {ROLLOUT_ID}\n    note: x\n",
        f"    to: {REF_B}\n",
        "    []\n",
    ],
)
def test_a_promotion_entry_needs_exactly_to_and_rollout(tmp_path: Path, entry: str) -> None:
    promoted, issues = promotion_issues(tmp_path, f"promoted:\n  {REF_A}:\n{entry}")
    assert promoted == {}
    assert issues == [(f"promoted[{REF_A!r}]", "a mapping with exactly 'to' and 'rollout'")]


def test_promoted_must_be_a_mapping(tmp_path: Path) -> None:
    promoted, issues = promotion_issues(tmp_path, f"promoted:\n  - {REF_A}\n")
    assert promoted == {}
    assert issues == [("promoted", "a mapping of name:tag to {to: ..., rollout: ...}")]


def test_a_rejected_promotion_leaves_the_declared_image(tmp_path: Path) -> None:
    lock, issues = read(
        tmp_path, IMAGES + f"promoted:\n  {REF_A}:\n    to: {REF_B}\n    rollout: bad\n"
    )
    assert len(issues) == 1
    assert lock.effective(REF_A) == REF_A
    assert lock.resolve(REF_A) == LockedImage(REF_A, DIGEST_A)


# --- the probe ------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.50) == 50
    assert percentile(values, 1.0) == 100
    assert percentile(values, 0.0) == 1
    assert percentile([5.0], 0.5) == 5
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2
    assert percentile([3.0, 1.0, 2.0], 0.99) == 3


def test_the_probe_cannot_end_the_heredoc_early() -> None:
    text = PROBE_SCRIPT.read_text()
    assert END == "TFENV_PROBE_EOF"
    assert END not in text.splitlines()
    assert text.endswith("\n")  # the terminator starts a line of its own


# --- the canary fact ------------------------------------------------------------------

LABELS = {
    ROLLOUT_ID_LABEL: ROLLOUT_ID,
    ROLLOUT_FROM_LABEL: OLD_IMAGE,
    ROLLOUT_TO_LABEL: NEW_IMAGE,
    "team": "ml",
    "tfenv.managed": "true",
}
PROBE_RESULT = {"sshd": "ok", "jupyter": "ok", "gpus": 2, "tensorflow": "ok"}
METRICS = {"p50_ms": 1.5, "p99_ms": 3.25, "errors": 0, "inferences": 50, "outputs": [0.5, 0.5]}


def captured() -> list[str]:
    return [
        f"TFENV-STATE running healthy\t{NEW_IMAGE}\t2026-11-27T10:00:00.1Z\t{json.dumps(LABELS)}",
        "TFENV-PROBE " + json.dumps(PROBE_RESULT),
        "TFENV-CKPT ok",
        "TFENV-LOG Traceback (most recent call last):",
        "TFENV-LOG No registered 'Foo' OpKernel for 'GPU' devices",
        "TFENV-METRICS " + json.dumps(METRICS),
    ]


def test_parse_reads_every_line() -> None:
    result = parse(captured())
    assert result["state"] == "running healthy"
    assert result["image"] == NEW_IMAGE
    assert result["started"] == "2026-11-27T10:00:00.1Z"
    assert result["labels"] == {
        ROLLOUT_ID_LABEL: ROLLOUT_ID,
        ROLLOUT_FROM_LABEL: OLD_IMAGE,
        ROLLOUT_TO_LABEL: NEW_IMAGE,
    }
    assert set(result["labels"]) == set(ROLLOUT_LABELS)
    assert result["health"] == PROBE_RESULT
    assert result["checkpoints"] == "ok"
    assert result["log_lines"] == [
        "Traceback (most recent call last):",
        "No registered 'Foo' OpKernel for 'GPU' devices",
    ]
    assert result["metrics"] == METRICS
    assert result["output"] == captured()[-5:]
    assert verdict(health_gates(result, gpus=2, jupyter=True)) is False  # the log lines


def test_parse_of_a_clean_container_passes_the_health_gates() -> None:
    lines = [line for line in captured() if not line.startswith("TFENV-LOG ")]
    assert verdict(health_gates(parse(lines), gpus=2, jupyter=True)) is True


def test_an_unreadable_metrics_line_is_an_error() -> None:
    result = parse(["TFENV-METRICS {not json", "TFENV-PROBE [1, 2]"])
    assert result["metrics"] == {"error": "unreadable metrics line"}
    assert result["health"] is None  # not an object
    assert metric_gates(METRICS, result["metrics"], LIMITS)[0].passed is False


def test_a_missing_container_is_absent() -> None:
    result = parse(["TFENV-STATE Error: No such object: dev"])
    assert result["state"] == "absent"
    assert result["image"] == ""
    assert result["labels"] == {}
    assert result["health"] is None and result["metrics"] is None
    assert result["log_lines"] == []
    assert "checkpoints" not in result


def test_labels_null_or_garbled_are_no_labels() -> None:
    assert parse([f"TFENV-STATE running \t{NEW_IMAGE}\tT\tnull"])["labels"] == {}
    garbled = parse([f"TFENV-STATE running \t{NEW_IMAGE}\tT\t{{oops"])
    assert garbled["labels"] == {}
    assert garbled["state"] == "running"


def canary_command(**options: object) -> str:
    command = CanaryCheck().command(container="dev", **options)  # type: ignore[arg-type]
    assert isinstance(command, StringCommand)
    return command.get_raw_value()


def test_canary_command_with_the_default_probe() -> None:
    text = canary_command(
        health=True,
        metrics=True,
        checkpoints="/checkpoints",
        model="/checkpoints/tfenv-canary/reference-model",
        inferences=50,
    )
    assert "docker exec -i dev python3 - /checkpoints/tfenv-canary/reference-model 50" in text
    assert f"<<'{END}'\n" in text
    assert f"\n{END}\n" in text  # the terminator on a line of its own
    assert PROBE_SCRIPT.read_text() in text
    assert 'docker logs --since "$since" dev' in text
    assert "TFENV-PROBE" in text
    assert "TFENV-CKPT" in text and "/checkpoints/.tfenv-canary-write-" in text
    assert "TFENV-STATE" in text and "seq 360" in text
    assert text.rstrip().endswith("true")


def test_canary_command_with_a_declared_probe() -> None:
    text = canary_command(metrics=True, probe=("python3", "/opt/probe.py"))
    assert "docker exec dev python3 /opt/probe.py 2>&1" in text
    assert "TFENV-METRICS" in text
    assert END not in text
    assert "docker exec -i" not in text


def test_canary_command_without_health_or_metrics() -> None:
    text = canary_command(health=False, metrics=False, timeout=30)
    assert "TFENV-STATE" in text and "seq 60" in text
    assert "docker exec" not in text
    assert "docker logs" not in text
    assert END not in text


def test_canary_command_quotes_the_container_and_model() -> None:
    command = CanaryCheck().command(container="dev; reboot", metrics=True, model="/m x")
    text = command.get_raw_value()
    assert "'dev; reboot'" in text
    assert "python3 - '/m x' 500" in text


# --- the journal ----------------------------------------------------------------------


def rollout(rollout_id: str = ROLLOUT_ID, **changes: object) -> Rollout:
    values: dict = {
        "id": rollout_id,
        "container": "dev",
        "inventory": "inv.py",
        "to_ref": REF_B,
        "to_image": NEW_IMAGE,
        "waves": [["h1"], ["h2"]],
        "hosts": {"h1": {"from": OLD_IMAGE}, "h2": {}},
        "options": {"bake": 60, "waves": "1,100%", "gates": True},
        **changes,
    }
    return Rollout(**values)


def test_journal_create_get_save(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    made = rollout()
    journal.create(made)
    got = journal.get(ROLLOUT_ID)
    assert got == made
    assert got is not None
    assert got.plan == {"waves": [["h1"], ["h2"]], "hosts": {"h1": {"from": OLD_IMAGE}, "h2": {}}}
    assert got.status == "running" and got.wave == 0
    made.status, made.wave, made.reason = "paused", 1, "p99 gate failed on h2"
    journal.save(made)
    again = journal.get(ROLLOUT_ID)
    assert again is not None
    assert (again.status, again.wave, again.reason) == ("paused", 1, "p99 gate failed on h2")
    assert again.options == {"bake": 60, "waves": "1,100%", "gates": True}
    assert journal.get("r-20261127-101500-ffff") is None
    assert [r.id for r in journal.all()] == [ROLLOUT_ID]
    journal.close()


def test_journal_active(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.active("dev", "inv.py") is None
    done = rollout("r-20261127-090000-0000", status="completed")
    journal.create(done)
    assert journal.active("dev", "inv.py") is None
    for status in ("running", "paused", "waiting"):
        current = rollout(status=status)
        if journal.get(ROLLOUT_ID) is None:
            journal.create(current)
        else:
            journal.save(current)
        found = journal.active("dev", "inv.py")
        assert found is not None
        assert (found.id, found.status) == (ROLLOUT_ID, status)
    assert journal.active("other", "inv.py") is None
    assert journal.active("dev", "other.py") is None
    journal.save(rollout(status="aborted"))
    assert journal.active("dev", "inv.py") is None
    journal.close()


def test_journal_steps(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    made = rollout()
    journal.create(made)
    assert journal.last(ROLLOUT_ID, "h1", "replace") is None
    journal.step(made, "h1", 0, "replace", "started")
    journal.step(made, "h1", 0, "replace", "passed", {"gates": [{"name": "p99"}]})
    journal.step(made, "h2", 1, "replace", "started")
    assert journal.last(ROLLOUT_ID, "h1", "replace") == ("passed", {"gates": [{"name": "p99"}]})
    assert journal.last(ROLLOUT_ID, "h2", "replace") == ("started", {})
    assert journal.last(ROLLOUT_ID, "h2", "bake") is None
    steps = journal.steps(ROLLOUT_ID)
    assert [(s["host"], s["wave"], s["step"], s["state"]) for s in steps] == [
        ("h1", 0, "replace", "started"),
        ("h1", 0, "replace", "passed"),
        ("h2", 1, "replace", "started"),
    ]
    assert steps[1]["detail"] == {"gates": [{"name": "p99"}]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", steps[0]["at"])
    assert journal.steps("r-20261127-101500-ffff") == []
    journal.close()


def test_journal_audit(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.audit_lines() == []
    first, second = rollout(), rollout("r-20261127-111500-3c4d", container="dev2")
    journal.audit(first, "started", wave=0)
    journal.audit(second, "started")
    journal.audit(first, "gates", host="h1", passed=True)
    mode = stat.S_IMODE(journal.audit_path.stat().st_mode)
    assert mode == 0o600
    lines = journal.audit_lines(ROLLOUT_ID)
    assert [line["event"] for line in lines] == ["started", "gates"]
    assert lines[0]["who"] == owner()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[0]["at"])
    assert lines[0]["from"] == [OLD_IMAGE]
    assert lines[0]["to"] == NEW_IMAGE
    assert lines[0]["container"] == "dev"
    assert lines[0]["wave"] == 0
    assert lines[1]["host"] == "h1" and lines[1]["passed"] is True
    assert [line["rollout"] for line in journal.audit_lines()] == [
        ROLLOUT_ID,
        "r-20261127-111500-3c4d",
        ROLLOUT_ID,
    ]
    with journal.audit_path.open("a") as handle:
        handle.write("not json\n")
    assert len(journal.audit_lines()) == 3  # an unreadable line is skipped
    journal.close()


def test_a_second_journal_sees_the_same_data(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    made = rollout()
    first.create(made)
    first.step(made, "h1", 0, "replace", "done")
    first.audit(made, "completed")
    second = Journal(tmp_path)
    assert second.get(ROLLOUT_ID) == made
    assert second.last(ROLLOUT_ID, "h1", "replace") == ("done", {})
    assert [line["event"] for line in second.audit_lines(ROLLOUT_ID)] == ["completed"]
    first.close()
    second.close()


def test_journal_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state" / ".tfenv"
    Journal(state).close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / "rollouts.sqlite").is_file()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="cannot be used"):
        Journal(blocker)


# --- the deploy leaves a rollout's image alone ------------------------------------------


def declared() -> DesiredContainer:
    return desired_container("dev", container(), OLD_IMAGE, {}, {})


def observed(labels: dict[str, str], image: str = NEW_IMAGE) -> ObservedContainer:
    return ObservedContainer(
        name="dev",
        id="c" * 64,
        image_id="sha256:" + "d" * 64,
        running=True,
        status="running",
        health="healthy",
        labels={"tfenv.managed": "true", **labels},
        options={"image": image},
    )


ROLLOUT_LABEL_VALUES = {
    ROLLOUT_ID_LABEL: ROLLOUT_ID,
    ROLLOUT_FROM_LABEL: OLD_IMAGE,
    ROLLOUT_TO_LABEL: NEW_IMAGE,
}


def test_rollout_in_progress() -> None:
    desired = declared()
    assert desired.image == OLD_IMAGE
    assert rollout_in_progress(desired, observed(ROLLOUT_LABEL_VALUES)) == ROLLOUT_ID


def test_rollout_in_progress_needs_an_id() -> None:
    labels = {k: v for k, v in ROLLOUT_LABEL_VALUES.items() if k != ROLLOUT_ID_LABEL}
    assert rollout_in_progress(declared(), observed(labels)) is None
    empty = {**ROLLOUT_LABEL_VALUES, ROLLOUT_ID_LABEL: ""}
    assert rollout_in_progress(declared(), observed(empty)) is None


def test_rollout_in_progress_ends_when_the_declared_image_changed() -> None:
    desired = desired_container("dev", container(), "reg/tf@sha256:" + "e" * 64, {}, {})
    assert rollout_in_progress(desired, observed(ROLLOUT_LABEL_VALUES)) is None


def test_rollout_in_progress_needs_the_container_to_run_its_target() -> None:
    other = "reg/tf@sha256:" + "f" * 64
    assert rollout_in_progress(declared(), observed(ROLLOUT_LABEL_VALUES, other)) is None
    # moved back to the declared image (a rollback): not the rollout's any more
    assert rollout_in_progress(declared(), observed(ROLLOUT_LABEL_VALUES, OLD_IMAGE)) is None


def test_rollout_in_progress_is_off_for_the_rollout_itself() -> None:
    replacing = dataclasses.replace(declared(), rollout=tuple(sorted(ROLLOUT_LABEL_VALUES.items())))
    assert rollout_in_progress(replacing, observed(ROLLOUT_LABEL_VALUES)) is None


# --- the reconcile report -------------------------------------------------------------

ROLLOUT_ITEM = Item(
    "containers", "dev.image", OLD_IMAGE, NEW_IMAGE, "rollout", f"tfenv rollout status {ROLLOUT_ID}"
)
APPLY_ITEM = Item("containers", "dev.restart", "unless-stopped", "no")


def make_report(**results: HostResult) -> Report:
    return Report(inventory="inv.py", started="2026-11-27T02:30:00Z", hosts=results)


def test_a_rollout_item_is_not_drift() -> None:
    moving = HostResult("h1", True, items=[ROLLOUT_ITEM])
    assert moving.status == "rollout-in-progress"
    assert moving.area_status("containers") == "rollout-in-progress"
    assert moving.area_status("images") == "clean"
    report = make_report(
        h1=moving,
        h2=HostResult("h2", True, items=[ROLLOUT_ITEM]),
        h3=HostResult("h3", True),
    )
    assert report.exit_code == EXIT_CLEAN
    totals = report.totals
    assert totals["rollout_in_progress"] == 2
    assert totals["clean"] == 1
    assert totals["drift"] == 0
    assert totals["items"] == 0
    assert report.to_json()["hosts"]["h1"]["status"] == "rollout-in-progress"
    assert Report.from_json(report.to_json()).totals == totals


def test_drift_beside_a_rollout_item_is_drift() -> None:
    mixed = HostResult("h1", True, items=[ROLLOUT_ITEM, APPLY_ITEM])
    assert mixed.status == "drift"
    report = make_report(h1=mixed, h2=HostResult("h2", True, items=[ROLLOUT_ITEM]))
    assert report.exit_code == EXIT_DRIFT
    assert report.totals["items"] == 1
    assert report.totals["drift"] == 1
    assert report.totals["rollout_in_progress"] == 1


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [("h200_memory_used_idle.txt", 0.0), ("h200_memory_used_1gib.txt", 1551.0)],
)
def test_probe_reads_gpu_memory_as_a_real_h200_prints_it(
    fixture: str, expected: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Captured with the probe's own nvidia-smi query on a lent H200 (and, there, the
    probe's function gave the same numbers against the real nvidia-smi)."""
    text = (Path(__file__).parent / "fixtures" / "nvidia_smi" / fixture).read_text()

    def fake_run(argv, **_):  # type: ignore[no-untyped-def]
        assert argv == ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        return subprocess.CompletedProcess(argv, 0, stdout=text, stderr="")

    monkeypatch.setattr(probe_script.subprocess, "run", fake_run)
    assert probe_script.gpu_memory_mib() == expected
