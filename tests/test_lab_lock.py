"""`tfenv lock` against the lab registry: --check passes, notices a moved tag,
and a rewrite records the new digest (the tag is put back afterwards).

Image: the lab TF images' tags and digests in the registry (no container runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from lab_fixtures import REPO

from tfenv.images.lock import read_lock
from tfenv.lab.fleet import Lab
from tfenv.lab.images import BASE_IMAGE

pytestmark = pytest.mark.lab

TAG = "tfenv/debian:bookworm"


def tfenv(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TFENV_LAB_DIR": str(lab.directory), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tfenv.cli", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def push(lab: Lab, local_port: str, image: str) -> None:
    env = {**os.environ, "DOCKER_CONFIG": str(lab.directory / "docker-client")}
    target = f"{local_port}/{TAG}"
    subprocess.run(["docker", "tag", image, target], check=True)
    subprocess.run(["docker", "push", target], check=True, env=env, capture_output=True)
    subprocess.run(["docker", "rmi", target], check=True, capture_output=True)


def locked_digest(state) -> str:
    lock, _ = read_lock(Path(state.lock))
    return lock.images[f"{state.registry['host']}/{TAG}"].digest


def test_lock_check_notices_a_moved_tag_and_lock_rewrites_it(lab_of, test_lab: Lab) -> None:
    state = lab_of(1, images=True)
    checked = tfenv(test_lab, "lock", "inventories/lab.py", "--check")
    assert checked.returncode == 0, checked.stderr
    assert "Every tag matches the lock." in checked.stdout
    assert f"registry.lab.test:5000/{TAG}  sha256:" in checked.stderr  # progress per image
    original = locked_digest(state)

    moved_image = f"tfenv-test/locktest:{uuid.uuid4().hex[:8]}"
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL tfenv.locktest={moved_image}\n"
    subprocess.run(["docker", "build", "-q", "-t", moved_image, "-"], input=dockerfile,
                   text=True, check=True, capture_output=True,
                   env={**os.environ, "DOCKER_BUILDKIT": "0"})  # fmt: skip
    local = state.registry["local"]
    try:
        push(test_lab, local, moved_image)
        moved = tfenv(test_lab, "lock", "inventories/lab.py", "--check")
        assert moved.returncode == 1, moved.stdout + moved.stderr
        assert f"registry.lab.test:5000/{TAG}: tag moved from {original} to sha256:" in moved.stdout
        assert "1 tag(s) differ from the lock; run: tfenv lock inventories/lab.py" in moved.stderr
        assert locked_digest(state) == original  # --check changes nothing

        rewritten = tfenv(test_lab, "lock", "inventories/lab.py")
        assert rewritten.returncode == 0, rewritten.stderr
        assert locked_digest(state) != original
        assert tfenv(test_lab, "lock", "inventories/lab.py", "--check").returncode == 0
    finally:
        push(test_lab, local, BASE_IMAGE)
        subprocess.run(["docker", "rmi", moved_image], capture_output=True, check=False)
        restored = tfenv(test_lab, "lock", "inventories/lab.py")
    assert restored.returncode == 0, restored.stderr
    assert locked_digest(state) == original
