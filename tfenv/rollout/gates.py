"""A rollout's gates: what the new container must show before the rollout goes on.

Pure: :func:`health_gates` and :func:`metric_gates` take what
:class:`tfenv.facts.canary.CanaryCheck` read on the host (and the baseline it
read on the old container) and return one
:class:`Gate` per check, each with its numbers. ``passed`` is ``None`` when
the check could not be made (inconclusive: the rollout pauses, it never rolls
back on that alone).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from tfenv.model.spec import CanaryGates

EPSILON = 1e-9  # floor of a probability in the KL divergence


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool | None  # None: inconclusive (could not be checked)
    detail: str
    numbers: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        mark = {True: "pass", False: "FAIL", None: "INCONCLUSIVE"}[self.passed]
        return f"{self.name}: {mark}: {self.detail}"


def kl_divergence(baseline: list[float], new: list[float]) -> float:
    """KL(baseline || new) of two output distributions (each normalised; floors at EPSILON)."""
    p = [max(float(v), 0.0) + EPSILON for v in baseline]
    q = [max(float(v), 0.0) + EPSILON for v in new]
    sp, sq = sum(p), sum(q)
    return sum((a / sp) * math.log((a / sp) / (b / sq)) for a, b in zip(p, q, strict=True))


def health_gates(check: dict, gpus: int | None, jupyter: bool) -> list[Gate]:
    """The built-in gates: running and healthy; sshd; Jupyter (token only); GPUs
    inside; a real TF op; the checkpoint mount writable; a clean log since start."""
    state = check.get("state", "").split()
    gates = [
        Gate(
            "running-healthy",
            state[:2] == ["running", "healthy"] or state == ["running"],
            f"docker: {' '.join(state) or 'no such container'}",
        )
    ]
    probe = check.get("health") or {}
    if not probe:
        said = " / ".join(check.get("output", [])[-3:]) or "no output"
        gates.append(Gate("in-container-probe", False, f"did not run ({said[:300]})"))
        return gates
    gates.append(Gate("sshd", probe.get("sshd") == "ok", f"sshd: {probe.get('sshd')}"))
    if jupyter:
        gates.append(
            Gate("jupyter", probe.get("jupyter") == "ok", f"token only: {probe.get('jupyter')}")
        )
    if gpus is not None:
        seen = probe.get("gpus")
        gates.append(
            Gate(
                "gpus",
                seen == gpus,
                f"{seen} visible inside, {gpus} declared",
                {"visible": seen, "declared": gpus},
            )
        )
    gates.append(
        Gate("tensorflow-op", probe.get("tensorflow") == "ok", f"{probe.get('tensorflow')}")
    )
    if "checkpoints" in check:
        gates.append(
            Gate("checkpoints-writable", check["checkpoints"] == "ok", str(check["checkpoints"]))
        )
    bad = check.get("log_lines", [])
    gates.append(
        Gate(
            "log-clean",
            not bad,
            "no OpKernel/Traceback line since start" if not bad else f"{bad[0][:200]}",
            {"lines": len(bad)},
        )
    )
    return gates


def _p99_gate(baseline: dict, new: dict, limits: CanaryGates) -> Gate:
    old_p99, new_p99 = float(baseline["p99_ms"]), float(new["p99_ms"])
    numbers = {
        "new_ms": new_p99,
        "baseline_ms": old_p99,
        "p50_new_ms": new.get("p50_ms"),
        "p50_baseline_ms": baseline.get("p50_ms"),
        "factor": limits.p99_factor,
    }
    bound = old_p99 * limits.p99_factor
    old_cpu, new_cpu = baseline.get("cpu_ms"), new.get("cpu_ms")
    if limits.p99_cpu_relative and old_cpu and new_cpu:
        # The host's CPU was new_cpu/old_cpu times slower for the new reading than
        # for the baseline: the new p99 at the baseline's CPU speed is compared.
        speed = float(new_cpu) / float(old_cpu)
        scaled = new_p99 / speed
        numbers.update({"cpu_ms_new": new_cpu, "cpu_ms_baseline": old_cpu,
                        "new_at_baseline_cpu_ms": round(scaled, 4)})  # fmt: skip
        return Gate(
            "p99",
            scaled <= bound,
            f"{scaled:.2f} ms at the baseline's CPU speed ({new_p99:.2f} ms measured, CPU "
            f"x{speed:.2f} as slow) vs baseline {old_p99:.2f} ms (limit x{limits.p99_factor}: "
            f"{bound:.2f} ms)",
            numbers,
        )
    return Gate(
        "p99",
        new_p99 <= bound,
        f"{new_p99:.2f} ms vs baseline {old_p99:.2f} ms (limit x{limits.p99_factor}: "
        f"{bound:.2f} ms)",
        numbers,
    )


def metric_gates(baseline: dict | None, new: dict | None, limits: CanaryGates) -> list[Gate]:
    """The probe's numbers on the new container against the baseline on the old one."""
    if baseline is None or new is None:
        what = "baseline" if baseline is None else "new container's"
        return [Gate("probe", None, f"no {what} metrics")]
    if "error" in baseline:
        return [Gate("probe", None, f"the baseline probe failed: {baseline['error']}")]
    if "error" in new:
        return [Gate("probe", False, f"the probe failed on the new image: {new['error']}")]
    gates = []
    count = max(int(new.get("inferences") or 0), 1)
    rate = int(new.get("errors") or 0) / count
    gates.append(
        Gate(
            "error-rate",
            rate <= limits.error_rate,
            f"{rate:.4f} (limit {limits.error_rate})",
            {
                "new": rate,
                "baseline": int(baseline.get("errors") or 0)
                / max(int(baseline.get("inferences") or 0), 1),
                "limit": limits.error_rate,
            },
        )
    )
    old_p99, new_p99 = baseline.get("p99_ms"), new.get("p99_ms")
    if old_p99 is None or new_p99 is None:
        gates.append(Gate("p99", False if new_p99 is None else None, "no latency measured"))
    else:
        gates.append(_p99_gate(baseline, new, limits))
    old_out, new_out = baseline.get("outputs"), new.get("outputs")
    if not old_out or not new_out or len(old_out) != len(new_out):
        gates.append(
            Gate(
                "kl-divergence",
                False if old_out else None,
                "outputs missing or of another shape than the baseline's",
            )
        )
    else:
        kl = kl_divergence(old_out, new_out)
        gates.append(
            Gate(
                "kl-divergence",
                kl <= limits.kl_divergence,
                f"{kl:.4f} (limit {limits.kl_divergence})",
                {"kl": kl, "limit": limits.kl_divergence},
            )
        )
    old_mem, new_mem = baseline.get("gpu_memory_mib"), new.get("gpu_memory_mib")
    if old_mem is None or new_mem is None:
        # No nvidia-smi inside the old container: nothing to compare with. Lost in
        # the new one: the GPUs are gone from it.
        gates.append(
            Gate("gpu-memory", old_mem is None, f"not measured (baseline {old_mem}, new {new_mem})")
        )
    else:
        bound = old_mem * limits.gpu_memory_factor
        gates.append(
            Gate(
                "gpu-memory",
                new_mem <= bound,
                f"{new_mem:.0f} MiB vs baseline {old_mem:.0f} MiB (limit x"
                f"{limits.gpu_memory_factor})",
                {"new_mib": new_mem, "baseline_mib": old_mem, "factor": limits.gpu_memory_factor},
            )
        )
    return gates


def verdict(gates: list[Gate]) -> bool | None:
    """False if any gate failed, else None if any was inconclusive, else True."""
    if any(g.passed is False for g in gates):
        return False
    if any(g.passed is None for g in gates):
        return None
    return True
