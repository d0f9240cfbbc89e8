"""When a GPU host needs a reboot, judged from captured GpuHost facts (tests/facts/)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from tfenv.facts.gpu import GpuHostState
from tfenv.operations.nvidia_driver import reboot_reasons

FACTS = Path(__file__).parent / "facts" / "gpu.GpuHost"


def observed(name: str) -> GpuHostState:
    return GpuHostState.from_json(yaml.safe_load((FACTS / f"{name}.yaml").read_text())["fact"])


@pytest.mark.parametrize(
    ("fixture", "declared", "reasons"),
    [
        ("debian12_ok", "550.127.05", []),
        ("debian12_ok", "550.144.03", ["kernel module 550.127.05 loaded, 550.144.03 declared"]),
        (
            "debian12_mismatch",
            "550.144.03",
            ["driver/library mismatch: kernel module 550.127.05, library 550.144; reboot required"],
        ),
        (
            "debian12_installed_not_loaded",
            "550.127.05",
            ["driver installed but no NVIDIA kernel module loaded; reboot required"],
        ),
        (
            "ubuntu2204_bare_nouveau",
            "550.127.05",
            ["nouveau is loaded (blacklisted now, gone after a reboot)"],
        ),
        ("debian12_bare", "550.127.05", []),  # nothing installed yet: the install comes first
    ],
)
def test_reboot_reasons(fixture: str, declared: str, reasons: list[str]) -> None:
    assert reboot_reasons(observed(fixture), declared) == reasons


def test_a_flavour_switch_needs_a_reboot() -> None:
    state = observed("debian12_ok")  # the open module 550.127.05 is loaded
    assert reboot_reasons(state, "550.127.05", "open") == []
    assert reboot_reasons(state, "550.127.05", "proprietary") == [
        "open kernel module loaded, proprietary declared"
    ]


NOUVEAU = "nouveau is loaded (blacklisted now, gone after a reboot)"


@pytest.mark.parametrize(
    ("fixture", "declared", "kernel_modules", "first"),
    [
        ("debian12_ok", "550.144.03", None, "kernel module 550.127.05 loaded, 550.144.03 declared"),
        (
            "debian12_mismatch",
            "550.144.03",
            None,
            "driver/library mismatch: kernel module 550.127.05, library 550.144; reboot required",
        ),
        (
            "debian12_installed_not_loaded",
            "550.127.05",
            None,
            "driver installed but no NVIDIA kernel module loaded; reboot required",
        ),
        (
            "debian12_ok",
            "550.127.05",
            "proprietary",
            "open kernel module loaded, proprietary declared",
        ),
    ],
    ids=["other version", "mismatch", "not loaded", "other flavour"],
)
def test_nouveau_is_named_beside_any_other_reason(
    fixture: str, declared: str, kernel_modules: str | None, first: str
) -> None:
    """One reboot clears both: the operator is told of each, the driver's first."""
    state = dataclasses.replace(observed(fixture), nouveau_loaded=True)
    assert reboot_reasons(state, declared, kernel_modules) == [first, NOUVEAU]
