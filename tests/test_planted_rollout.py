"""Rollouts: the canary check's log scan, run for real by ``sh`` against a ``docker``
stand-in on PATH that prints captured log lines. (Which hosts a driver rollback moves
back is tested with the scripted fleet, in tests/test_driver_controller.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tfenv.facts.canary import CanaryCheck, parse
from tfenv.rollout.gates import health_gates

# --- 1. the canary's log scan: OpKernel and Traceback lines ----------------------------

STARTED = "2026-12-01T09:00:00.123456789Z"
IMAGE = "registry.test:5000/ml/tf@sha256:" + "a" * 64
OPKERNEL = (
    "2026-12-01 09:00:04.512: E tensorflow/core/framework/op_kernel.cc:1840] OpKernel "
    "('op: \"MatMul\" device_type: \"GPU\"') for unknown op; No registered 'MatMul' OpKernel "
    "for 'GPU' devices compatible with node {{node MatMul}}"
)
TRACEBACK = "Traceback (most recent call last):"
BENIGN = [
    "[I 09:00:01.001 ServerApp] Jupyter Server 2.14.2 is running at: http://127.0.0.1:8888/",
    "2026-12-01 09:00:02.100: I tensorflow/core/common_runtime/gpu/gpu_device.cc:2021] "
    "Created device /job:localhost/replica:0/task:0/device:GPU:0 with 79078 MB memory",
    "Server listening on 0.0.0.0 port 2222.",
    "W0000 00:00:1733043604.5 op_kernel.cc registered kernels: 'MatMul' (no OpKernel warning)",
]
FAKE_DOCKER = r"""#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_CALLS"
case "$1" in
info) exit 0 ;;
inspect)
  case "$3" in
    *Labels*) printf 'running healthy\t%s\t%s\t{}\n' "$FAKE_IMAGE" "$FAKE_STARTED" ;;
    *) printf '%s\n' "$FAKE_STARTED" ;;
  esac ;;
exec) echo 'TFENV-PROBE {"sshd": "ok", "gpus": 2, "tensorflow": "ok"}' ;;
logs) cat "$FAKE_LOGS" ;;
*) echo "unexpected docker $*" >&2; exit 99 ;;
esac
"""


def run_canary(tmp_path: Path, log_lines: list[str]) -> tuple[dict, list[str]]:
    """The CanaryCheck command of container ``dev`` run by ``sh``, ``docker logs``
    printing ``log_lines``: the parsed fact and every docker call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    logs, calls = tmp_path / "docker.log", tmp_path / "calls"
    logs.write_text("".join(line + "\n" for line in log_lines))
    calls.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "FAKE_LOGS": str(logs), "FAKE_CALLS": str(calls), "FAKE_IMAGE": IMAGE,
           "FAKE_STARTED": STARTED}  # fmt: skip
    command = CanaryCheck().command(container="dev", health=True, timeout=5).get_raw_value()
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    return parse(done.stdout.splitlines()), calls.read_text().splitlines()


def test_the_canary_log_scan_keeps_opkernel_and_traceback_lines(tmp_path: Path) -> None:
    lines = [BENIGN[0], BENIGN[1], OPKERNEL, BENIGN[2], TRACEBACK, BENIGN[3]]
    check, calls = run_canary(tmp_path, lines)
    assert check["log_lines"] == [OPKERNEL, TRACEBACK]
    assert f"logs --since {STARTED} dev" in calls  # only since this container started
    assert (check["state"], check["image"]) == ("running healthy", IMAGE)
    log_gate = next(g for g in health_gates(check, None, False) if g.name == "log-clean")
    assert log_gate.passed is False
    assert log_gate.detail == OPKERNEL[:200]
    assert log_gate.numbers == {"lines": 2}


def test_an_opkernel_line_alone_is_kept(tmp_path: Path) -> None:
    check, _ = run_canary(tmp_path, [BENIGN[0], OPKERNEL])
    assert check["log_lines"] == [OPKERNEL]


def test_the_canary_log_scan_keeps_at_most_five_lines(tmp_path: Path) -> None:
    many = [OPKERNEL.replace("MatMul", f"Op{i}") for i in range(7)]
    check, _ = run_canary(tmp_path, many)
    assert check["log_lines"] == many[:5]


def test_a_clean_log_passes_the_log_gate(tmp_path: Path) -> None:
    check, _ = run_canary(tmp_path, BENIGN)
    assert check["log_lines"] == []
    log_gate = next(g for g in health_gates(check, None, False) if g.name == "log-clean")
    assert log_gate.passed is True
