"""What keeps a container in use, judged from the busy check's lines (pure)."""

from __future__ import annotations

import subprocess

from tfenv.containers.busy import BUSY_FUNCTIONS, busy_reasons, in_use


def test_an_ssh_session_is_named_by_its_peer() -> None:
    # /proc/net/tcp: little-endian words; 0100A8C0 is 192.168.0.1, D10E is 53518
    assert busy_reasons(["ssh 0100A8C0:D10E"], 30) == ["an SSH session from 192.168.0.1:53518"]
    v6 = "ssh 0000000000000000FFFF00000100A8C0:0016"  # ::ffff:192.168.0.1 port 22
    assert busy_reasons([v6], 30) == ["an SSH session from 192.168.0.1:22"]


def test_kernels_busy_or_recently_active_count_idle_ones_do_not() -> None:
    lines = ["kernel 1a2b3c4d busy 2", "kernel 5e6f7a8b idle 120", "kernel 9c0d1e2f idle 4000"]
    assert busy_reasons(lines, 30) == [
        "Jupyter kernel 1a2b3c4d is busy",
        "Jupyter kernel 5e6f7a8b was active 120 s ago (idle after 30 min)",
    ]
    # idle_minutes 0: only a kernel running a cell counts
    assert busy_reasons(lines, 0) == ["Jupyter kernel 1a2b3c4d is busy"]
    assert busy_reasons(["kernel 00000000 starting 1"], 0) == [
        "Jupyter kernel 00000000 is starting"
    ]


def test_a_gpu_process_is_named_with_its_memory() -> None:
    assert busy_reasons(["gpu 443, python3, 1542"], 30) == ["GPU process 443 (python3, 1542 MiB)"]


def test_what_cannot_be_read_counts_as_in_use() -> None:
    reasons = busy_reasons(
        ["gpu-error Failed to initialize NVML: Driver/library version mismatch",
         "kernel-error HTTP Error 403: Forbidden"], 30,
    )  # fmt: skip
    assert reasons == [
        "could not read its GPU processes (Failed to initialize NVML: Driver/library version "
        "mismatch), so it counts as in use",
        "could not read its Jupyter kernels (HTTP Error 403: Forbidden), so it counts as in use",
    ]


def test_nothing_in_use_is_idle() -> None:
    assert busy_reasons([], 30) == []


def test_the_shell_functions_parse_in_posix_sh() -> None:
    # The fact and the replace command run them with sh (dash on Debian/Ubuntu).
    for shell in ("sh", "bash"):
        result = subprocess.run([shell, "-n", "-c", BUSY_FUNCTIONS], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_the_jupyter_probe_has_no_single_quote() -> None:
    # It lives in a single-quoted shell variable.
    start = BUSY_FUNCTIONS.index("tfenv_kernels_probe='") + len("tfenv_kernels_probe='")
    assert "'" not in BUSY_FUNCTIONS[start : BUSY_FUNCTIONS.index("'\ntfenv_gpu_apps")]


def _observed(running: bool, busy: list[str], checked: bool):
    from tfenv.facts.tf_node import ObservedContainer

    return ObservedContainer(
        name="dev", id="x", image_id="y", running=running, status="", health=None,
        busy=busy, busy_checked=checked,
    )  # fmt: skip


def test_a_running_container_whose_check_did_not_run_is_in_use() -> None:
    assert in_use(_observed(True, [], checked=False), 30) == [
        "whether it is in use could not be read, so it counts as in use"
    ]
    assert in_use(_observed(True, [], checked=True), 30) == []
    assert in_use(_observed(False, [], checked=False), 30) == []  # stopped: nobody in it
    assert in_use(_observed(True, ["gpu 7, python3, 10"], checked=True), 30) == [
        "GPU process 7 (python3, 10 MiB)"
    ]
