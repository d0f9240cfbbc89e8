"""A driver rollout's pure parts: which group data file declares a host's driver and
rewriting its version there, the gates after a host's move, the deploy's "a rollout put
this version here" and "a reboot will be due" rules, and ``rollout start --driver``'s
refusals."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from tfenv.facts.gpu import GpuHostState, Package
from tfenv.layout import DRIVER_GROUP
from tfenv.model.spec import NodeSpec
from tfenv.operations.nvidia_driver import driver_in_rollout, reboot_after_install
from tfenv.rollout.declared_driver import (
    DeclarationError,
    check_declared,
    declaring_file,
    write_version,
)
from tfenv.rollout.driver import driver_gates
from tfenv.rollout.gates import verdict
from tfenv.rollout.run import RolloutError
from tfenv.rollout.start import build_driver_rollout

REPO = Path(__file__).resolve().parents[1]
GPU_FACTS = Path(__file__).parent / "facts" / "gpu.GpuHost"

OLD = "550.127.05"
NEW = "550.144.03"
ROLLOUT_ID = "r-20261128-101500-ab12"
NOT_LOADED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)


def driver_data(version: str = OLD, branch: str | None = None, comment: str = "") -> str:
    branch = branch or version.split(".")[0]
    return (
        f'"""Group data of {comment or "a group"}."""\n'
        "\n"
        "gpu_count = 2  # two GPUs each\n"
        "nvidia_driver = {\n"
        f'    "branch": "{branch}",  # the branch\n'
        f'    "version": "{version}",  # pinned\n'
        '    "kernel_modules": "open",\n'
        "}\n"
        'container_toolkit = {"version": "1.17.3"}\n'
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(inventory file, base directory): the inventory in a folder of its own."""
    base = tmp_path / "base"
    (base / "group_data").mkdir(parents=True)
    inventory = write(tmp_path / "inv" / "lab_inventory.py", "lab = ['h1']\n")
    return inventory, base


# --- declaring_file: pyinfra's order -------------------------------------------------------


def test_the_group_data_beside_the_inventory_wins_for_one_group(layout) -> None:
    inventory, base = layout
    write(base / "group_data" / "lab.py", driver_data(comment="base"))
    beside = write(inventory.parent / "group_data" / "lab.py", driver_data(comment="beside"))
    assert declaring_file(inventory, base, ["lab"], {}) == beside


def test_the_base_group_data_is_used_when_the_inventory_has_none(layout) -> None:
    inventory, base = layout
    in_base = write(base / "group_data" / "lab.py", driver_data())
    assert declaring_file(inventory, base, ["lab"], {}) == in_base


def test_a_file_beside_the_inventory_without_the_key_does_not_hide_the_base_one(layout) -> None:
    inventory, base = layout
    in_base = write(base / "group_data" / "lab.py", driver_data())
    write(inventory.parent / "group_data" / "lab.py", "gpu_count = 8\n")
    assert declaring_file(inventory, base, ["lab"], {}) == in_base


def test_the_inventory_in_the_base_directory_is_one_folder(tmp_path: Path) -> None:
    inventory = write(tmp_path / "inventory.py", "lab = ['h1']\n")
    declared = write(tmp_path / "group_data" / "lab.py", driver_data())
    assert declaring_file(inventory, tmp_path, ["lab"], {}) == declared


def test_the_last_group_wins(layout) -> None:
    inventory, base = layout
    gpu = write(base / "group_data" / "gpu.py", driver_data(comment="gpu"))
    lab = write(base / "group_data" / "lab.py", driver_data(comment="lab"))
    assert declaring_file(inventory, base, ["gpu", "lab"], {}) == lab
    assert declaring_file(inventory, base, ["lab", "gpu"], {}) == gpu


def test_a_later_group_in_the_base_beats_an_earlier_group_beside_the_inventory(layout) -> None:
    inventory, base = layout
    write(inventory.parent / "group_data" / "gpu.py", driver_data(comment="gpu"))
    lab = write(base / "group_data" / "lab.py", driver_data(comment="lab"))
    assert declaring_file(inventory, base, ["gpu", "lab"], {}) == lab


def test_a_later_group_without_the_key_leaves_it_to_an_earlier_one(layout) -> None:
    inventory, base = layout
    gpu = write(base / "group_data" / "gpu.py", driver_data())
    write(base / "group_data" / "lab.py", "gpu_count = 2\n")
    assert declaring_file(inventory, base, ["gpu", "lab"], {}) == gpu


def test_all_is_used_last(layout) -> None:
    inventory, base = layout
    every = write(base / "group_data" / "all.py", driver_data(comment="all"))
    assert declaring_file(inventory, base, ["gpu", "lab"], {}) == every
    lab = write(base / "group_data" / "lab.py", driver_data(comment="lab"))
    assert declaring_file(inventory, base, ["gpu", "lab"], {}) == lab
    # all.py beside the inventory still comes after every group in the base
    write(inventory.parent / "group_data" / "all.py", driver_data(comment="all beside"))
    assert declaring_file(inventory, base, ["gpu", "lab"], {}) == lab


def test_host_data_with_the_driver_is_refused(layout) -> None:
    inventory, base = layout
    write(base / "group_data" / "lab.py", driver_data())
    host_data = {"nvidia_driver": {"branch": "550", "version": OLD}, "ssh_port": 22}
    with pytest.raises(DeclarationError, match="nvidia_driver is set for the host itself"):
        declaring_file(inventory, base, ["lab"], host_data)
    # other host data is fine
    assert declaring_file(inventory, base, ["lab"], {"ssh_port": 22}).name == "lab.py"


def test_no_declaration_anywhere_is_refused(layout) -> None:
    inventory, base = layout
    write(base / "group_data" / "lab.py", "gpu_count = 2\n")
    with pytest.raises(DeclarationError, match="groups gpu, lab assigns nvidia_driver"):
        declaring_file(inventory, base, ["gpu", "lab"], {})
    with pytest.raises(DeclarationError, match="groups all assigns"):
        declaring_file(inventory, base, [], {})


def test_a_declaration_that_is_not_a_dict_literal_is_refused(layout) -> None:
    inventory, base = layout
    write(base / "group_data" / "lab.py", f'nvidia_driver = dict(branch="550", version="{OLD}")\n')
    with pytest.raises(DeclarationError, match="not a plain dict literal"):
        declaring_file(inventory, base, ["lab"], {})


def test_a_nested_declaration_like_the_labs_is_found(layout) -> None:
    inventory, base = layout
    text = (
        "from tfenv.lab.fleet import current_state\n"
        "_state = current_state(required=False)\n"
        "if _state is not None:\n"
        "    gpu_count = _state.gpus_per_host\n"
        f'    nvidia_driver = {{"branch": "550", "version": "{OLD}", "reboot": "if-needed"}}\n'
    )
    lab = write(base / "group_data" / "lab.py", text)
    write(base / "group_data" / "all.py", driver_data(version="535.216.01"))
    assert declaring_file(inventory, base, ["lab"], {}) == lab
    check_declared(lab, OLD)


# --- check_declared ------------------------------------------------------------------------


def test_check_declared_accepts_the_declared_version(tmp_path: Path) -> None:
    check_declared(write(tmp_path / "lab.py", driver_data()), OLD)


def test_check_declared_refuses_another_version(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", driver_data())
    with pytest.raises(DeclarationError) as caught:
        check_declared(path, NEW)
    assert repr(OLD) in str(caught.value) and repr(NEW) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f'V = "{OLD}"\nnvidia_driver = {{"branch": "550", "version": V}}\n', "not a plain str"),
        ('nvidia_driver = {"branch": "550", "version": f"550.{1}"}\n', "not a plain string"),
        ('nvidia_driver = {"branch": "550", "version": 550.127}\n', "not a plain string"),
        (f'B = "550"\nnvidia_driver = {{"branch": B, "version": "{OLD}"}}\n', "not a plain str"),
        ('nvidia_driver = {"branch": "550"}\n', "has no 'version'"),
        ('nvidia_driver = {"branch": "550", "version": ("550."\n  "127.05")}\n', "spans lines"),
        ("gpu_count = 2\n", "no nvidia_driver assignment"),
    ],
)
def test_check_declared_refuses_what_it_cannot_rewrite(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(DeclarationError, match=words):
        check_declared(write(tmp_path / "lab.py", text), OLD)


def test_check_declared_ignores_other_keys_and_spreads(tmp_path: Path) -> None:
    text = f'X = {{}}\nnvidia_driver = {{**X, "reboot": R, "branch": "550", "version": "{OLD}"}}\n'
    check_declared(write(tmp_path / "lab.py", text), OLD)


# --- write_version -------------------------------------------------------------------------


def test_write_version_changes_only_the_version_string(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", driver_data())
    before = path.read_bytes()
    write_version(path, OLD, NEW)
    after = path.read_bytes()
    assert after == before.replace(f'"{OLD}"'.encode(), f'"{NEW}"'.encode())
    assert after != before
    check_declared(path, NEW)


def test_write_version_changes_the_branch_with_the_major(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", driver_data())
    before = path.read_text()
    write_version(path, OLD, "560.35.03")
    expected = before.replace(f'"{OLD}"', '"560.35.03"').replace(
        '"branch": "550"', '"branch": "560"'
    )
    assert path.read_text() == expected
    assert '"branch": "560",  # the branch\n' in path.read_text()


def test_write_version_on_one_line_with_both_literals(tmp_path: Path) -> None:
    text = (
        f"# comment\nnvidia_driver = {{'version': '{OLD}', 'branch': '550'}}  # same line\nx = 1\n"
    )
    path = write(tmp_path / "lab.py", text)
    write_version(path, OLD, "560.35.03")
    assert path.read_text() == (
        "# comment\nnvidia_driver = {'version': '560.35.03', 'branch': '560'}  # same line\nx = 1\n"
    )


def test_write_version_without_a_branch_key_changes_the_version_only(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", f'nvidia_driver = {{"version": "{OLD}"}}\n')
    write_version(path, OLD, "560.35.03")
    assert path.read_text() == 'nvidia_driver = {"version": "560.35.03"}\n'


def test_write_version_downgrades_too(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", driver_data(version="560.35.03"))
    write_version(path, "560.35.03", OLD)
    assert path.read_text() == driver_data(version=OLD)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_write_version_keeps_the_file_mode(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "lab.py", driver_data())
    path.chmod(mode)
    write_version(path, OLD, NEW)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert f'"{NEW}"' in path.read_text()


def test_write_version_already_at_new_is_a_no_op(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", driver_data(version=NEW))
    path.chmod(0o600)
    inode, text = path.stat().st_ino, path.read_text()
    write_version(path, OLD, NEW)
    assert path.stat().st_ino == inode  # not even rewritten
    assert path.read_text() == text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_version_refuses_a_file_with_neither_version(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", driver_data(version="535.216.01"))
    text = path.read_text()
    with pytest.raises(DeclarationError, match=re.escape("535.216.01")):
        write_version(path, OLD, NEW)
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["lab.py"]  # no temporary file left


def test_write_version_refuses_a_file_without_a_declaration(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", "gpu_count = 2\n")
    with pytest.raises(DeclarationError, match="no nvidia_driver assignment"):
        write_version(path, OLD, NEW)
    assert path.read_text() == "gpu_count = 2\n"


def test_write_version_rewrites_a_nested_declaration(tmp_path: Path) -> None:
    text = (
        "if _state is not None:\n"
        "    nvidia_driver = {\n"
        '        "branch": "550",\n'
        f'        "version": "{OLD}",\n'
        "    }\n"
        "else:\n"
        "    gpu_count = 0\n"
    )
    path = write(tmp_path / "lab.py", text)
    write_version(path, OLD, "560.35.03")
    assert path.read_text() == text.replace(OLD, "560.35.03").replace('"550"', '"560"')


def test_write_version_on_a_copy_of_the_repos_lab_group_data(layout) -> None:
    inventory, base = layout
    original = (REPO / "group_data" / "lab.py").read_text(encoding="utf-8")
    assert f'"version": "{OLD}"' in original  # what this test relies on
    copy = write(base / "group_data" / "lab.py", original)
    assert declaring_file(inventory, base, ["lab"], {}) == copy
    check_declared(copy, OLD)
    write_version(copy, OLD, "560.35.03")
    written = copy.read_text(encoding="utf-8")
    changed = [
        (a, b) for a, b in zip(original.splitlines(), written.splitlines(), strict=True) if a != b
    ]
    assert changed == [
        ('        "branch": "550",', '        "branch": "560",'),
        (f'        "version": "{OLD}",', '        "version": "560.35.03",'),
    ]
    assert written.endswith(original[-200:].replace(OLD, "560.35.03"))
    check_declared(copy, "560.35.03")


# --- driver_gates ----------------------------------------------------------------------------


def healthy_check() -> dict:
    return {
        "state": "running healthy",
        "health": {"sshd": "ok", "jupyter": "ok", "gpus": 2, "tensorflow": "ok"},
        "log_lines": [],
    }


def driver_line(**changes: object) -> dict:
    """nvidia-smi and the module on ``NEW`` with two GPUs, as the deploy's _driver_line."""
    return {
        "driver_state": "ok",
        "driver_version": NEW,
        "module_version": NEW,
        "smi_error": None,
        "gpus": 2,
        "installed": f"{NEW}-1",
        "record": {"id": ROLLOUT_ID, "from": OLD, "to": NEW},
        **changes,
    }


def check_line(driver: dict | None = None, gpu_count: int | None = 2, **containers) -> dict:
    entries = containers or {"dev": {"check": healthy_check(), "gpus": 2, "jupyter": True}}
    return {"driver": driver or driver_line(), "gpu_count": gpu_count, "containers": entries}


def by_name(gates) -> dict:
    return {g.name: g for g in gates}


def test_driver_gates_all_good_pass() -> None:
    gates = driver_gates(check_line(), NEW)
    assert [g.name for g in gates] == [
        "driver",
        "gpu-count",
        "dev.running-healthy",
        "dev.sshd",
        "dev.jupyter",
        "dev.gpus",
        "dev.tensorflow-op",
        "dev.log-clean",
    ]
    assert all(g.passed is True for g in gates)
    assert verdict(gates) is True
    driver = gates[0]
    assert driver.detail == f"nvidia-smi: {NEW}, module {NEW}; {NEW} expected"
    assert driver.numbers == {"nvidia_smi": NEW, "module": NEW, "expected": NEW}


def test_driver_gates_smi_failing_fails_the_driver_gate_with_its_error() -> None:
    driver = driver_line(
        driver_state="not-loaded", driver_version=None, module_version=None, smi_error=NOT_LOADED,
        gpus=0,
    )  # fmt: skip
    gates = by_name(driver_gates(check_line(driver), NEW))
    assert gates["driver"].passed is False
    assert NOT_LOADED in gates["driver"].detail
    assert gates["driver"].detail.endswith(f"{NEW} expected")
    assert gates["gpu-count"].passed is False
    assert verdict(list(gates.values())) is False


def test_driver_gates_without_an_error_message_show_the_state() -> None:
    driver = driver_line(driver_state="timeout", driver_version=None, smi_error=None, gpus=0)
    gate = driver_gates(check_line(driver), NEW)[0]
    assert gate.passed is False
    assert gate.detail.startswith("nvidia-smi: timeout;")


def test_driver_gates_module_other_than_wanted_fails() -> None:
    gates = driver_gates(check_line(driver_line(module_version=OLD)), NEW)
    driver = by_name(gates)["driver"]
    assert driver.passed is False
    assert f"module {OLD}" in driver.detail
    assert driver.numbers == {"nvidia_smi": NEW, "module": OLD, "expected": NEW}
    assert verdict(gates) is False


def test_driver_gates_smi_other_than_wanted_fails() -> None:
    gates = by_name(driver_gates(check_line(driver_line(driver_version=OLD)), NEW))
    assert gates["driver"].passed is False
    assert f"nvidia-smi: {OLD}" in gates["driver"].detail


def test_driver_gates_on_a_rollback_want_the_old_version() -> None:
    back = driver_line(driver_version=OLD, module_version=OLD)
    assert verdict(driver_gates(check_line(back), OLD)) is True
    assert verdict(driver_gates(check_line(back), NEW)) is False


def test_driver_gates_wrong_gpu_count_fails_gpu_count_only() -> None:
    gates = by_name(driver_gates(check_line(driver_line(gpus=1)), NEW))
    assert gates["gpu-count"].passed is False
    assert gates["gpu-count"].detail == "1 GPU(s), 2 declared"
    assert gates["gpu-count"].numbers == {"visible": 1, "declared": 2}
    assert [n for n, g in gates.items() if g.passed is False] == ["gpu-count"]


def test_driver_gates_without_a_declared_gpu_count_have_no_gpu_count_gate() -> None:
    gates = driver_gates(check_line(driver_line(gpus=1), gpu_count=None), NEW)
    assert "gpu-count" not in by_name(gates)
    assert verdict(gates) is True


def test_driver_gates_declared_zero_gpus_is_checked() -> None:
    gates = by_name(driver_gates(check_line(driver_line(gpus=1), gpu_count=0), NEW))
    assert gates["gpu-count"].passed is False


def test_driver_gates_a_failing_container_gate_is_prefixed_with_its_name() -> None:
    bad = healthy_check()
    bad["health"]["sshd"] = "refused"
    line = check_line(
        dev={"check": bad, "gpus": 2, "jupyter": True},
        ok={"check": healthy_check(), "gpus": None, "jupyter": False},
    )
    gates = driver_gates(line, NEW)
    failed = [g.name for g in gates if g.passed is False]
    assert failed == ["dev.sshd"]
    assert by_name(gates)["dev.sshd"].detail == "sshd: refused"
    assert verdict(gates) is False
    names = [g.name for g in gates]
    # containers in name order; "ok" declares neither GPUs nor Jupyter
    assert names.index("dev.log-clean") < names.index("ok.running-healthy")
    assert "ok.gpus" not in names and "ok.jupyter" not in names


def test_driver_gates_container_gpus_lost_inside_fail() -> None:
    check = healthy_check()
    check["health"]["gpus"] = 0
    line = check_line(dev={"check": check, "gpus": 2, "jupyter": True})
    gates = by_name(driver_gates(line, NEW))
    assert gates["dev.gpus"].passed is False
    assert gates["dev.gpus"].numbers == {"visible": 0, "declared": 2}


def test_driver_gates_a_container_that_did_not_start_fails() -> None:
    check = {"state": "exited", "health": None, "output": ["Error: nvidia-container-cli: failed"]}
    line = check_line(dev={"check": check, "gpus": 2})
    gates = by_name(driver_gates(line, NEW))
    assert gates["dev.running-healthy"].passed is False
    assert gates["dev.in-container-probe"].passed is False
    assert "nvidia-container-cli" in gates["dev.in-container-probe"].detail


def test_driver_gates_without_containers_are_the_driver_and_gpu_count() -> None:
    line = {"driver": driver_line(), "gpu_count": 2, "containers": {}}
    assert [g.name for g in driver_gates(line, NEW)] == ["driver", "gpu-count"]


# --- driver_in_rollout and reboot_after_install ---------------------------------------------


def gpu_state(fixture: str, **changes: object) -> GpuHostState:
    data = yaml.safe_load((GPU_FACTS / f"{fixture}.yaml").read_text())["fact"]
    return dataclasses.replace(GpuHostState.from_json(data), **changes)


DEBIAN_DRIVER = ("nvidia-driver", "nvidia-kernel-open-dkms", "nvidia-smi", "libnvidia-ml1",
                 "nvidia-persistenced")  # fmt: skip


def with_driver(state: GpuHostState, version: str, names=DEBIAN_DRIVER) -> GpuHostState:
    packages = dict(state.packages)
    for name in names:
        packages[name] = Package(f"{version}-1", True)
    return dataclasses.replace(state, packages=packages)


RECORD = {"id": ROLLOUT_ID, "from": OLD, "to": NEW}


def test_no_record_keeps_the_declared_version() -> None:
    state = with_driver(gpu_state("debian12_ok"), NEW)
    assert state.driver_rollout is None
    assert driver_in_rollout(state, OLD, "open") == (OLD, "")


def test_a_record_with_its_version_installed_keeps_that_version() -> None:
    state = with_driver(gpu_state("debian12_ok", driver_rollout=dict(RECORD)), NEW)
    assert driver_in_rollout(state, OLD, "open") == (NEW, ROLLOUT_ID)


def test_the_mismatch_fixture_after_an_install_is_in_the_rollout() -> None:
    # packages on NEW, the old module still loaded: installed, not yet rebooted
    state = gpu_state("debian12_mismatch", driver_rollout=dict(RECORD))
    assert driver_in_rollout(state, OLD, "open") == (NEW, ROLLOUT_ID)


def test_the_driver_rollout_fixture_before_the_install_keeps_the_declared_version() -> None:
    state = gpu_state("debian12_driver_rollout")
    assert state.driver_rollout == RECORD
    assert driver_in_rollout(state, OLD, "open") == (OLD, "")


def test_a_record_whose_packages_are_not_all_at_its_version_keeps_the_declared() -> None:
    state = with_driver(gpu_state("debian12_ok", driver_rollout=dict(RECORD)), NEW)
    packages = dict(state.packages)
    packages["nvidia-persistenced"] = Package(f"{OLD}-1", True)
    assert driver_in_rollout(dataclasses.replace(state, packages=packages), OLD, "open") == (
        OLD,
        "",
    )
    packages["nvidia-persistenced"] = Package(f"{NEW}-1", False)  # removed, config kept
    assert driver_in_rollout(dataclasses.replace(state, packages=packages), OLD, "open") == (
        OLD,
        "",
    )
    del packages["nvidia-persistenced"]
    assert driver_in_rollout(dataclasses.replace(state, packages=packages), OLD, "open") == (
        OLD,
        "",
    )


def test_a_record_of_another_flavour_keeps_the_declared_version() -> None:
    # proprietary wants nvidia-kernel-dkms, the host has the open one at NEW
    state = with_driver(gpu_state("debian12_ok", driver_rollout=dict(RECORD)), NEW)
    assert driver_in_rollout(state, OLD, "proprietary") == (OLD, "")


def test_a_record_from_another_version_than_declared_keeps_the_declared() -> None:
    record = {"id": ROLLOUT_ID, "from": "535.216.01", "to": NEW}
    state = with_driver(gpu_state("debian12_ok", driver_rollout=record), NEW)
    assert driver_in_rollout(state, OLD, "open") == (OLD, "")


@pytest.mark.parametrize(
    "record",
    [
        {"from": OLD, "to": NEW},  # no id
        {"id": "", "from": OLD, "to": NEW},
        {"id": ROLLOUT_ID, "from": OLD},  # no target
        {"id": ROLLOUT_ID, "from": OLD, "to": OLD},
        {"error": "/var/lib/tfenv/driver-rollout.json: Expecting value"},
    ],
)
def test_an_incomplete_record_keeps_the_declared_version(record: dict) -> None:
    state = with_driver(gpu_state("debian12_ok", driver_rollout=record), NEW)
    assert driver_in_rollout(state, OLD, "open") == (OLD, "")


def test_a_record_on_an_unsupported_os_keeps_the_declared_version() -> None:
    state = with_driver(gpu_state("debian12_ok", driver_rollout=dict(RECORD), os_version="11"), NEW)
    assert driver_in_rollout(state, OLD, "open") == (OLD, "")


def test_a_record_on_ubuntu_checks_ubuntus_packages() -> None:
    state = gpu_state("ubuntu2404_proprietary_secureboot_reboot", driver_rollout=dict(RECORD))
    assert driver_in_rollout(state, OLD, "proprietary") == (OLD, "")
    packages = dict(state.packages)
    for name in ("nvidia-driver-550", "nvidia-dkms-550", "nvidia-utils-550",
                 "libnvidia-compute-550"):  # fmt: skip
        packages[name] = Package(f"{NEW}-0ubuntu1", True)
    moved = dataclasses.replace(state, packages=packages)
    assert driver_in_rollout(moved, OLD, "proprietary") == (NEW, ROLLOUT_ID)
    # Debian's version suffix is not Ubuntu's
    assert driver_in_rollout(with_driver(state, NEW), OLD, "proprietary") == (OLD, "")


def test_reboot_after_install_on_a_bare_host_is_none() -> None:
    state = gpu_state("debian12_bare")
    assert (state.driver_state, state.module_version) == ("absent", None)
    assert reboot_after_install(state, NEW, "open") == []


def test_reboot_after_install_with_the_module_loaded_is_none() -> None:
    assert reboot_after_install(gpu_state("debian12_ok"), OLD, "open") == []


def test_reboot_after_install_with_another_module_names_both() -> None:
    reasons = reboot_after_install(gpu_state("debian12_ok"), NEW, "open")
    assert len(reasons) == 1
    assert OLD in reasons[0] and NEW in reasons[0]
    assert reasons == [f"kernel module {OLD} loaded, {NEW} declared"]


def test_reboot_after_install_without_a_module_while_installed() -> None:
    state = gpu_state("debian12_installed_not_loaded")
    assert state.module_version is None and state.driver_state == "not-loaded"
    assert reboot_after_install(state, OLD, "open") == ["no NVIDIA kernel module loaded"]


def test_reboot_after_install_with_another_flavour_loaded() -> None:
    reasons = reboot_after_install(gpu_state("debian12_ok"), OLD, "proprietary")
    assert reasons == ["open kernel module loaded, proprietary declared"]


def test_reboot_after_install_with_nouveau_loaded() -> None:
    state = gpu_state("debian12_ok", nouveau_loaded=True)
    assert reboot_after_install(state, OLD, "open") == ["nouveau is loaded"]
    both = reboot_after_install(state, NEW, "open")
    assert len(both) == 2 and both[-1] == "nouveau is loaded"


def test_reboot_after_install_on_a_mismatch_is_due() -> None:
    # the library moved on, the module did not: the new one loads only after a boot
    state = gpu_state("debian12_mismatch")
    assert reboot_after_install(state, NEW, "open") == [
        f"kernel module {OLD} loaded, {NEW} declared"
    ]


# --- build_driver_rollout -------------------------------------------------------------------


@dataclasses.dataclass
class FakeInventory:
    host_data: dict

    def get_host_data(self, name: str) -> dict:
        return self.host_data.get(name, {})


@dataclasses.dataclass
class FakeHost:
    name: str
    groups: tuple
    inventory: FakeInventory


def spec(name: str, version: str | None = OLD, reboot: str = "if-needed", **fields) -> NodeSpec:
    driver = None
    if version is not None:
        driver = {"branch": version.split(".")[0], "version": version, "reboot": reboot}
    return NodeSpec(host=name, gpu_count=2, nvidia_driver=driver, **fields)


@pytest.fixture
def fleet(layout):
    """Three lab hosts (h2 a canary), the driver declared in the base's lab.py."""
    inventory, base = layout
    write(base / "group_data" / "lab.py", driver_data())
    inv = FakeInventory({})
    hosts = [
        FakeHost("h1", ("lab",), inv),
        FakeHost("h2", ("lab", "canary"), inv),
        FakeHost("h3", ("lab",), inv),
    ]
    return inventory, base, hosts, inv


def start(fleet, specs: dict, version: str = NEW, waves: str = "1,100%"):
    inventory, base, hosts, _ = fleet
    options = {"waves": waves, "max_unavailable": 1}
    return build_driver_rollout(str(inventory), hosts, specs, version, options, base)


def specs_for(*names: str, **per_host: NodeSpec) -> dict:
    return {name: per_host.get(name) or spec(name) for name in names}


def test_build_driver_rollout_plans_the_hosts(fleet) -> None:
    _, base, _, _ = fleet
    specs = specs_for("h1", "h2", "h3")
    rollout = start(fleet, specs)
    assert rollout.container == DRIVER_GROUP
    assert rollout.to_image == NEW
    assert rollout.to_ref == f"nvidia-driver {NEW}"
    assert rollout.waves == [["h2"], ["h1", "h3"]]  # the canary first
    assert rollout.options["kind"] == "driver"
    assert rollout.options["declarations"] == {str(base / "group_data" / "lab.py"): OLD}
    assert rollout.hosts["h2"]["canary"] is True and rollout.hosts["h1"]["canary"] is False
    assert rollout.hosts["h1"]["declared"] == OLD
    assert rollout.hosts["h1"]["containers"] == [] and rollout.hosts["h1"]["policy"] == "none"


def test_build_driver_rollout_leaves_out_hosts_without_a_driver(fleet) -> None:
    specs = specs_for("h1", "h2", "h3", h3=spec("h3", version=None))
    rollout = start(fleet, specs)
    assert sorted(rollout.hosts) == ["h1", "h2"]
    assert [h for w in rollout.waves for h in w] == ["h2", "h1"]


def test_build_driver_rollout_without_any_driver_is_refused(fleet) -> None:
    specs = {n: spec(n, version=None) for n in ("h1", "h2", "h3")}
    with pytest.raises(RolloutError, match="declares nvidia_driver"):
        start(fleet, specs)


def test_build_driver_rollout_refuses_hosts_that_never_reboot(fleet) -> None:
    specs = specs_for(
        "h1", "h2", "h3", h3=spec("h3", reboot="never"), h1=spec("h1", reboot="never")
    )
    with pytest.raises(RolloutError) as caught:
        start(fleet, specs)
    message = str(caught.value)
    assert message.startswith("h1, h3: reboot is 'never'")
    assert "h2" not in message


@pytest.mark.parametrize("version", ["550.144.03-1", "v550.144.03", "55.1.1", "latest", "", "550"])
def test_build_driver_rollout_refuses_a_bad_version(fleet, version: str) -> None:
    with pytest.raises(RolloutError, match="expected an exact driver version"):
        start(fleet, specs_for("h1", "h2", "h3"), version=version)


def test_build_driver_rollout_refuses_when_every_host_declares_it(fleet) -> None:
    with pytest.raises(RolloutError, match=re.escape(f"every host already declares driver {OLD}")):
        start(fleet, specs_for("h1", "h2", "h3"), version=OLD)


def test_build_driver_rollout_refuses_a_host_with_its_own_driver_data(fleet) -> None:
    _, _, _, inv = fleet
    inv.host_data["h3"] = {"nvidia_driver": {"branch": "550", "version": OLD}}
    with pytest.raises(RolloutError) as caught:
        start(fleet, specs_for("h1", "h2", "h3"))
    assert "h3: nvidia_driver is set for the host itself" in str(caught.value)
    assert "h1:" not in str(caught.value)


def test_build_driver_rollout_refuses_data_that_disagrees_with_the_file(fleet) -> None:
    # the hosts' data says 535 (e.g. from somewhere tfenv cannot rewrite), the file 550
    specs = {n: spec(n, version="535.216.01") for n in ("h1", "h2", "h3")}
    with pytest.raises(RolloutError, match="could not be written") as caught:
        start(fleet, specs)
    assert str(caught.value).count("version is '550.127.05'") == 3


def test_build_driver_rollout_refuses_a_non_literal_declaration(fleet) -> None:
    _, base, _, _ = fleet
    write(base / "group_data" / "lab.py", f'V = "{OLD}"\nnvidia_driver = {{"version": V}}\n')
    with pytest.raises(RolloutError, match="not a plain string"):
        start(fleet, specs_for("h1", "h2", "h3"))


def test_build_driver_rollout_reports_a_broken_group_data_file(fleet) -> None:
    _, base, _, _ = fleet
    write(base / "group_data" / "canary.py", "nvidia_driver = {\n")
    with pytest.raises(RolloutError) as caught:
        start(fleet, specs_for("h1", "h2", "h3"))
    assert "h2:" in str(caught.value) and "h1:" not in str(caught.value)


def test_build_driver_rollout_records_each_declaring_file(fleet) -> None:
    _, base, _, _ = fleet
    canary = write(base / "group_data" / "canary.py", driver_data())
    rollout = start(fleet, specs_for("h1", "h2", "h3"))
    assert rollout.options["declarations"] == {
        str(base / "group_data" / "lab.py"): OLD,
        str(canary): OLD,
    }


def test_build_driver_rollout_a_bad_wave_plan_is_a_rollout_error(fleet) -> None:
    with pytest.raises(RolloutError, match="--waves"):
        start(fleet, specs_for("h1", "h2", "h3"), waves="0")


def test_the_whole_rollout_file_round_trip(fleet) -> None:
    """start records the file; completion's write_version moves it to the new version."""
    rollout = start(fleet, specs_for("h1", "h2", "h3"), version="560.35.03")
    for path, old in rollout.options["declarations"].items():
        write_version(Path(path), old, rollout.to_image)
        check_declared(Path(path), "560.35.03")
        assert '"branch": "560"' in Path(path).read_text()
    assert not any(name.endswith(".tmp") for name in os.listdir(Path(path).parent))


def test_a_prefixed_string_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = write(
        tmp_path / "lab.py", 'nvidia_driver = {"branch": "550", "version": u"550.127.05"}\n'
    )
    with pytest.raises(DeclarationError, match="plain string"):
        check_declared(path, OLD)


def test_text_that_is_not_ascii_before_the_literal_does_not_shift_the_rewrite(
    tmp_path: Path,
) -> None:
    text = 'nvidia_driver = {"note": "é", "version": "550.127.05", "branch": "550"}\n'
    path = write(tmp_path / "lab.py", text)
    write_version(path, OLD, "560.35.03")
    assert path.read_text() == (
        'nvidia_driver = {"note": "é", "version": "560.35.03", "branch": "560"}\n'
    )


def test_two_assignments_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", (
        'import os\nif os.environ.get("X"):\n    nvidia_driver = {"version": "550.1.1"}\n'
        'nvidia_driver = {"version": "550.127.05"}\n'
    ))  # fmt: skip
    with pytest.raises(DeclarationError, match="assigned 2 times"):
        check_declared(path, OLD)


def test_an_annotated_assignment_is_found_and_rewritten(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.py", 'nvidia_driver: dict = {"version": "550.127.05"}\n')
    write_version(path, OLD, "550.144.03")
    assert path.read_text() == 'nvidia_driver: dict = {"version": "550.144.03"}\n'


def test_the_driver_operation_reports_a_rollouts_version_as_a_rollout_not_drift() -> None:
    from pyinfra.context import ctx_host, ctx_state
    from pyinfra_testing.util import FakeState, create_host

    from tfenv.drift import capture
    from tfenv.operations.nvidia_driver import nvidia_driver

    state = GpuHostState.from_json(yaml.safe_load(
        (GPU_FACTS / "debian12_ok.yaml").read_text())["fact"])  # fmt: skip
    host = create_host(FakeState(), name="gpu1", facts={})
    with ctx_state.use(host.state), ctx_host.use(host), capture("gpu1") as items:
        list(nvidia_driver._inner(version=NEW, observed=state, rollout=ROLLOUT_ID,
                                  declared=OLD))  # fmt: skip
    rollout = [i for i in items if i.action == "rollout"]
    assert [(i.area, i.field, i.declared, i.observed, i.command) for i in rollout] == [
        ("driver", "version", OLD, NEW, f"tfenv rollout status {ROLLOUT_ID}")
    ]
