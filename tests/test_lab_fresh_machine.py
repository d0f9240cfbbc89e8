"""A fresh machine: the lab installs what it needs, as the README says.

Run with a PATH that hides /usr/sbin (where Debian puts debootstrap), the lab
still finds debootstrap, and a tool that is not installed at all is installed
with apt, exactly as `make demo` on a fresh Debian 12 would.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tfenv.lab.engine import ensure_command
from tfenv.lab.run import LabError

pytestmark = pytest.mark.lab


@pytest.fixture
def apt_root() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root on Debian: the fresh-machine test must run")
        pytest.skip("needs root and apt-get (Debian/Ubuntu)")


def test_debootstrap_hidden_from_path_is_found(apt_root, monkeypatch) -> None:
    assert shutil.which("debootstrap", path="/usr/sbin") or shutil.which("debootstrap")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert shutil.which("debootstrap") is None  # hidden, as on a user's PATH without sbin
    assert ensure_command("debootstrap", "debootstrap", "the base image's builder") == (
        "/usr/sbin/debootstrap"
    )


def test_a_missing_tool_is_installed_with_apt(apt_root) -> None:
    # A small package no lab machine needs: removed first, so apt really installs it.
    subprocess.run(["apt-get", "remove", "-y", "-qq", "tree"], capture_output=True, check=False)
    assert shutil.which("tree") is None
    try:
        assert ensure_command("tree", "tree", "a test tool") == "/usr/bin/tree"
    finally:
        subprocess.run(["apt-get", "remove", "-y", "-qq", "tree"], capture_output=True, check=False)


def test_an_unknown_package_says_what_to_do(apt_root) -> None:
    with pytest.raises(LabError, match="apt-get install -y -qq tfenv-no-such-package failed"):
        ensure_command("tfenv-no-such-tool", "tfenv-no-such-package", "nothing real")
