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
