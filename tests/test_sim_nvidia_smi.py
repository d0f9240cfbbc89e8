"""The lab's SIMULATED nvidia-smi against real nvidia-smi output (tests/fixtures/nvidia_smi).

The simulator runs here against a scratch root (NVIDIA_SIM_ROOT); the same
script runs on lab hosts. Each format check is first proven on the real
capture, then applied to the simulator, so a drift in either fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfenv.lab.sim import sim_file
from tfenv.lab.sim.nvidia import GPU_MEMORY_MIB, GPU_NAME, gpus_for

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia_smi"
UUID = r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
LIST_LINE = re.compile(rf"^GPU (\d+): (NVIDIA [^()]+) \(UUID: {UUID}\)$")
BUS_ID = re.compile(r"^[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7]$")
VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def sim_root(tmp_path: Path) -> Path:
    """A scratch root holding a loaded 550.127.05 open module and two GPUs."""
    script = tmp_path / "nvidia-smi"
    script.write_text(sim_file("nvidia-smi"))
    (tmp_path / "usr/lib/nvidia-sim").mkdir(parents=True)
    (tmp_path / "usr/lib/nvidia-sim/version").write_text("550.127.05\n")
    (tmp_path / "etc/nvidia-sim").mkdir(parents=True)
    (tmp_path / "etc/nvidia-sim/gpus.json").write_text(json.dumps(gpus_for("lab-1", 2)))
    load_module(tmp_path, "550.127.05")
    return tmp_path


def load_module(root: Path, version: str) -> None:
    proc = root / "proc/driver/nvidia"
    proc.mkdir(parents=True, exist_ok=True)
    real = fixture("proc_version_open.txt")
    (proc / "version").write_text(real.replace("565.57.01", version))


def smi(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / "nvidia-smi"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NVIDIA_SIM_ROOT": str(root)},
        check=False,
    )


def test_list_matches_the_real_format(sim_root: Path) -> None:
    for real in ("h100_list.txt", "a100_list.txt"):
        assert LIST_LINE.match(fixture(real).strip())
    assert fixture("h100_list.txt").split(" (UUID")[0] == f"GPU 0: {GPU_NAME}"
    result = smi(sim_root, "-L")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [LIST_LINE.match(line).group(1) for line in lines] == ["0", "1"]
    assert all(LIST_LINE.match(line).group(2) == GPU_NAME for line in lines)


def _csv(text: str) -> list[list[str]]:
    return [line.split(", ") for line in text.splitlines()]


def test_query_with_header_matches_real_headers_and_units(sim_root: Path) -> None:
    for real, fields in (
        ("h100_query_memory.csv", "index,name,memory.total"),
        ("l40s_query_bus.csv", "index,name,pci.bus_id,memory.total,driver_version"),
        ("a5000_query_uuid.csv", "index,name,uuid,memory.total,driver_version"),
    ):
        real_rows = _csv(fixture(real))
        result = smi(sim_root, f"--query-gpu={fields}", "--format=csv")
        assert result.returncode == 0, result.stdout
        rows = _csv(result.stdout)
        # The same header for the same fields (power.limit is not simulated).
        assert rows[0] == real_rows[0][: len(rows[0])]
        for real_value, value, header in zip(real_rows[1], rows[1], rows[0], strict=False):
            if header == "memory.total [MiB]":
                assert real_value.endswith(" MiB") and value.endswith(" MiB")
            if header == "pci.bus_id":
                assert BUS_ID.match(real_value) and BUS_ID.match(value)
            if header == "driver_version":
                assert VERSION.match(real_value) and value == "550.127.05"
    h100 = _csv(fixture("h100_query_memory.csv"))[1]
    assert (
        _csv(smi(sim_root, "--query-gpu=index,name,memory.total", "--format=csv").stdout)[1] == h100
    )  # an H100 reports exactly what the real one does
    assert f"{GPU_MEMORY_MIB} MiB" == h100[2]


def test_query_noheader_nounits(sim_root: Path) -> None:
    fields = "index,name,uuid,memory.total,driver_version,persistence_mode,pci.bus_id"
    result = smi(sim_root, f"--query-gpu={fields}", "--format=csv,noheader,nounits")
    rows = _csv(result.stdout)
    uuids = [gpu["uuid"] for gpu in gpus_for("lab-1", 2)]
    assert rows == [
        [
            "0",
            GPU_NAME,
            uuids[0],
            str(GPU_MEMORY_MIB),
            "550.127.05",
            "Disabled",
            "00000000:18:00.0",
        ],
        [
            "1",
            GPU_NAME,
            uuids[1],
            str(GPU_MEMORY_MIB),
            "550.127.05",
            "Disabled",
            "00000000:2A:00.0",
        ],
    ]


def test_persistence_mode_follows_the_daemon(sim_root: Path) -> None:
    pid_dir = sim_root / "run/nvidia-persistenced"
    pid_dir.mkdir(parents=True)
    (pid_dir / "nvidia-persistenced.pid").write_text(f"{os.getpid()}\n")
    out = smi(sim_root, "--query-gpu=persistence_mode", "--format=csv,noheader").stdout
    assert out.split() == ["Enabled", "Enabled"]


def test_library_newer_than_loaded_module_is_the_real_mismatch(sim_root: Path) -> None:
    (sim_root / "usr/lib/nvidia-sim/version").write_text("550.144.03\n")
    result = smi(sim_root, "-L")
    real = fixture("mismatch.txt").splitlines()
    assert result.returncode == 18
    assert result.stdout.splitlines() == [real[0], "NVML library version: 550.144"]
    assert re.match(r"^NVML library version: \d+\.\d+$", real[1])
    load_module(sim_root, "550.144.03")  # what a reboot does
    assert smi(sim_root, "-L").returncode == 0


def test_no_module_loaded_is_the_real_failure(sim_root: Path) -> None:
    (sim_root / "proc/driver/nvidia/version").unlink()
    result = smi(sim_root, "--query-gpu=name", "--format=csv,noheader")
    assert result.returncode == 9
    assert result.stdout == fixture("no_driver.txt")


def test_unknown_field_is_rejected(sim_root: Path) -> None:
    result = smi(sim_root, "--query-gpu=name,bogus", "--format=csv")
    assert result.returncode == 2
    assert 'Field "bogus" is not a valid field to query.' in result.stdout


# lab-1's two GPUs, written down once: the same on every machine and every run
# (a host re-created by `lab up` keeps its GPUs' UUIDs).
LAB_1_GPUS = [
    {
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-4a24f164-25c1-57b7-b52b-ce3026501b9c",
        "serial": "1654950084739",
        "pci_bus_id": "00000000:18:00.0",
        "memory_mib": 81559,
    },
    {
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-5342c986-f3d6-5202-920c-61b45a6011fe",
        "serial": "1654521183764",
        "pci_bus_id": "00000000:2A:00.0",
        "memory_mib": 81559,
    },
]


def test_simulated_gpus_are_stable_per_host() -> None:
    assert gpus_for("lab-1", 2) == LAB_1_GPUS
    assert gpus_for("lab-1", 1) == LAB_1_GPUS[:1]  # adding GPUs keeps the first ones
    assert gpus_for("lab-2", 1)[0]["uuid"] != LAB_1_GPUS[0]["uuid"]
    assert all(BUS_ID.match(gpu["pci_bus_id"]) for gpu in gpus_for("lab-1", 8))


def test_simulated_gpus_look_like_the_real_ones() -> None:
    """Name, UUID form and memory as a real H100 80GB HBM3 reports them (real captures)."""
    real_name = LIST_LINE.match(fixture("h100_list.txt").strip()).group(2)
    real_memory = _csv(fixture("h100_query_memory.csv"))[1][2]  # "81559 MiB"
    assert re.fullmatch(UUID, _csv(fixture("h200_query_gpu.txt"))[1][2])  # the form, proven
    for gpu in gpus_for("lab-1", 8):
        assert gpu["name"] == real_name
        assert re.fullmatch(UUID, gpu["uuid"])
        assert f"{gpu['memory_mib']} MiB" == real_memory


def _real_apps_sections(name: str) -> dict[str, list[str]]:
    """The capture's sections (``## csv``, ``## noheader``...) from a real H200."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in fixture(name).splitlines():
        if line.startswith("## "):
            current = line[3:]
            sections[current] = []
        elif not line.startswith("rc="):
            sections[current].append(line)
    return sections


APPS = "pid,process_name,used_memory,gpu_uuid,gpu_bus_id"


def _gpu_process(root: Path, pid: int, name: str, gpu: str) -> None:
    proc = root / "proc" / str(pid)
    proc.mkdir(parents=True)
    (proc / "environ").write_bytes(f"PATH=/bin\0NVIDIA_SIM_GPU_PROCESS={gpu}\0".encode())
    (proc / "comm").write_text(name + "\n")


def test_compute_apps_match_a_real_capture(sim_root: Path) -> None:
    busy = _real_apps_sections("h200_compute_apps_busy.txt")
    idle = _real_apps_sections("h200_compute_apps_idle.txt")
    # Nothing on the GPUs: the header alone, or nothing at all.
    assert (
        smi(sim_root, f"--query-compute-apps={APPS}", "--format=csv").stdout.splitlines()
        == (idle["csv"])
    )
    none = smi(sim_root, f"--query-compute-apps={APPS}", "--format=csv,noheader,nounits")
    assert none.returncode == 0 and none.stdout == "" and idle["noheader,nounits"] == []
    # A process marked as holding GPU 1 (and one that holds none).
    _gpu_process(sim_root, 443, "python3", "1")
    (sim_root / "proc" / "17").mkdir()
    (sim_root / "proc" / "17" / "environ").write_bytes(b"PATH=/bin\0")
    (sim_root / "proc" / "17" / "comm").write_text("bash\n")
    gpu1 = gpus_for("lab-1", 2)[1]
    for section, fmt in (("csv", "csv"), ("noheader", "csv,noheader"),
                         ("noheader,nounits", "csv,noheader,nounits")):  # fmt: skip
        real = _csv("\n".join(busy[section]))
        ours = _csv(smi(sim_root, f"--query-compute-apps={APPS}", f"--format={fmt}").stdout)
        assert len(ours) == len(real)
        if section == "csv":
            assert ours[0] == real[0]  # headers and units as the real tool prints them
            real, ours = real[1:], ours[1:]
        # Same shape: pid, name, memory (with the unit where the real one has it).
        assert ours[0][:3] == real[0][:3], (ours, real)
        assert re.fullmatch(UUID, ours[0][3]) and ours[0][3] == gpu1["uuid"]
        assert BUS_ID.match(real[0][4]) and ours[0][4] == gpu1["pci_bus_id"]


def test_compute_apps_refuse_an_unknown_field_like_the_real_tool(sim_root: Path) -> None:
    result = smi(sim_root, "--query-compute-apps=pid,bogus", "--format=csv")
    assert result.returncode == 2
    assert result.stdout == fixture("h200_bad_field.txt").removesuffix("rc=2\n")
