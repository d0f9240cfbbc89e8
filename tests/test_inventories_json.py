"""`pyinfra INVENTORY debug-inventory --json` works for every inventory: group data
files expose only data (pyinfra keeps every module-level name that is not an import,
so a helper object there would break JSON output and land in every host's data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from lab_fixtures import REPO

from tfenv.lab.fleet import Lab

INVENTORIES = sorted(p.name for p in (REPO / "inventories").glob("*.py"))


def debug_inventory(inventory: str, env: dict[str, str] | None = None) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", f"inventories/{inventory}", "debug-inventory", "--json"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout[result.stdout.index("[") :]
    return json.loads(text)


def test_every_inventory_is_listed() -> None:
    assert INVENTORIES == ["gpu.py", "lab.py"]


def test_the_example_fleet_serialises() -> None:
    hosts = debug_inventory("gpu.py")
    assert {h["name"] for h in hosts} == {
        "gpu-01.example.internal", "gpu-02.example.internal", "gpu-03.example.internal"
    }  # fmt: skip
    assert all(h["data"]["gpu_count"] == 8 for h in hosts)


@pytest.mark.lab
def test_the_lab_serialises(lab_of, test_lab: Lab) -> None:
    lab_of(1, images=True)
    hosts = debug_inventory("lab.py", {"TFENV_LAB_DIR": str(test_lab.directory)})
    data = hosts[0]["data"]
    assert "containers" in data and "image_lock" in data
    assert not any(key.startswith("_state") or key == "_registry" for key in data), sorted(data)
