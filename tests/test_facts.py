"""tfenv's facts in pyinfra's JSON/YAML fixture style: command output in, fact out.

Fixtures live in tests/facts/<module>.<Fact>/; the outputs are captured from
lab hosts (real Debian 12, simulated NVIDIA stack) or assembled from real
Ubuntu output formats, each file says which.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra_testing.facts import make_fact_tests

from tfenv.facts.gpu import SCRIPT, SECTIONS, GpuHost

FACTS = Path(__file__).parent / "facts"

TestGpuHost = make_fact_tests("tfenv.facts", "gpu.GpuHost", FACTS / "gpu.GpuHost")


def test_gpu_host_command_prints_every_section_it_parses() -> None:
    # The fixtures hold no command (it is one long script): its sections are checked here.
    printed = {line.split(";")[0].removeprefix("s ") for line in SCRIPT.splitlines()}
    printed |= {"smi-rc"}  # printed after nvidia-smi's exit code is saved
    assert set(SECTIONS) <= printed
    assert GpuHost().command() == SCRIPT  # one script: one round trip per host


TestTfNode = make_fact_tests("tfenv.facts", "tf_node.TfNode", FACTS / "tf_node.TfNode")


def test_the_clock_skew_is_the_hosts_clock_minus_this_machines() -> None:
    from tfenv.facts.gpu import MARK, parse

    lines = [f"{MARK}clock", "1800086400"]
    assert parse(lines, now=1800000000.4).clock_skew == 86400
    assert parse(lines, now=1800000300).clock_skew == 86100
    assert parse([f"{MARK}clock", "1800000000"], now=1800000120.0).clock_skew == -120
    # unreadable or missing: None (the clock operation then fails the host)
    assert parse([f"{MARK}clock", "Thu Nov 26"], now=1800000000).clock_skew is None
    assert parse([], now=1800000000).clock_skew is None


def test_clock_skew_reads_as_a_duration_and_a_direction() -> None:
    from tfenv.operations.clock import describe_skew

    assert describe_skew(86403) == "1 day ahead of"
    assert describe_skew(86399) == "1 day ahead of"  # read a second late: still a day
    assert describe_skew(-3629) == "1 h behind"
    assert describe_skew(3631) == "1 h 1 min ahead of"
    assert describe_skew(-2 * 86400 - 3600) == "2 days 1 h behind"
    assert describe_skew(-5400) == "1 h 30 min behind"
    assert describe_skew(301) == "5 min 1 s ahead of"
