"""Mount unit names must be what systemd derives from the path, or systemd refuses the unit."""

import shutil
import subprocess

import pytest

from tfenv.operations.nfs_mount import unit_name

CASES = [
    "/mnt/checkpoints",
    "/srv/nfs-data/ckpt",
    "/data/my.dir/x_y",
    "/mnt/with space",
    "/a//b/",
    "/.snapshots/ckpt",  # a leading dot is escaped: a unit name never starts with one
    "/mnt/.hidden",  # any other dot is kept
]


@pytest.mark.parametrize("path", CASES)
def test_unit_name_matches_systemd_escape(path: str) -> None:
    escape = shutil.which("systemd-escape")
    if escape is None:
        pytest.skip("systemd-escape not installed")
    expected = subprocess.run(
        [escape, "--path", "--suffix=mount", path], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert unit_name(path) == expected


def test_known_names() -> None:
    assert unit_name("/mnt/checkpoints") == "mnt-checkpoints.mount"
    assert unit_name("/srv/nfs-data/ckpt") == "srv-nfs\\x2ddata-ckpt.mount"
    # Known without systemd-escape too, as systemd 252 prints them:
    assert unit_name("/.snapshots/ckpt") == "\\x2esnapshots-ckpt.mount"
    assert unit_name("//.snapshots") == "\\x2esnapshots.mount"
    assert unit_name("/mnt/.hidden") == "mnt-.hidden.mount"
