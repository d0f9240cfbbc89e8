"""Under CI a skipped lab test fails the run; elsewhere it is only a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SKIPPING = """
import pytest

pytestmark = pytest.mark.lab


def test_needs_the_engine():
    pytest.skip("no Docker engine")
"""


def run_pytest(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "1"
    env["PYTHONPATH"] = str(TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "ci_guard", "-p", "no:cacheprovider",
         "-m", "lab", "-o", "markers=lab: x", str(tmp_path / "test_skips.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_skipped_lab_test_fails_under_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CI: 1 lab test(s) skipped, which CI does not allow" in result.stdout


def test_a_skipped_lab_test_is_only_a_skip_elsewhere(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
