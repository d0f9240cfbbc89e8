"""tfenv's facts in pyinfra's JSON/YAML fixture style: command output in, fact out.

Fixtures live in tests/facts/<module>.<Fact>/; the outputs are captured from
lab hosts (real Debian 12, simulated NVIDIA stack) or assembled from real
Ubuntu output formats, each file says which.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra_testing.facts import make_fact_tests

from tfenv.facts.gpu import SCRIPT, SECTIONS

FACTS = Path(__file__).parent / "facts"

TestGpuHost = make_fact_tests("tfenv.facts", "gpu.GpuHost", FACTS / "gpu.GpuHost")


def test_gpu_host_is_one_command_reading_every_section() -> None:
    for section in SECTIONS:
        assert f"s {section};" in SCRIPT or f"s {section}\n" in SCRIPT or f"s {section}" in SCRIPT
    # One round trip: no fact calls another one.
    assert (
        "host.get_fact" not in Path(__file__).parent.joinpath("../tfenv/facts/gpu.py").read_text()
    )
