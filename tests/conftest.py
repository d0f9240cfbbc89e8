from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

pytest_plugins = ["time_table", "lab_fixtures", "ci_guard"]

KEY_ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3JzbiBzaG91bGQgYmUgYSByZWFsIGtleQ== t@test"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64

LOCK_TEXT = f"""version: 1
images:
  registry.test:5000/ml/tf:2.17.0:
    digest: {DIGEST_A}
  registry.test:5000/ml/tf:2.18.0:
    digest: {DIGEST_B}
"""

GOOD_DATA = {
    "gpu_count": 4,
    "nvidia_driver": {"branch": "550", "version": "550.127.05"},
    "docker_engine": {"version": "27.3.1"},
    "container_toolkit": {"version": "1.17.3"},
    "image_lock": "images.lock.yaml",
    "registries": {"registry.test:5000": {"username": "robot", "password_secret": "reg_pw"}},
    "secrets": {
        "reg_pw": {"env": "TFENV_TEST_REG_PW"},
        "token": {"file": "secrets/token"},
    },
    "nfs_mounts": {
        "ckpt": {"server": "nfs.test", "export": "/export/ckpt", "mount_point": "/mnt/ckpt"},
    },
    "containers": {
        "dev-a": {
            "image": "registry.test:5000/ml/tf:2.17.0",
            "user": {"name": "alice", "uid": 2001, "gid": 2001},
            "authorized_keys": [KEY_ED25519],
            "ports": [{"container": 2222, "host": 2201}],
            "gpus": [0, 1],
            "jupyter": {"token_secret": "token"},
            "checkpoints": {"nfs": "ckpt"},
        },
        "dev-b": {
            "image": "registry.test:5000/ml/tf:2.18.0",
            "user": {"name": "bob", "uid": 2002, "gid": 2002},
            "ports": [{"container": 2222, "host": 2202}],
            "gpus": [2, 3],
        },
    },
    # pyinfra's own keys must be left alone
    "ssh_port": 22,
    "_sudo": True,
}

SECRET_ENV_VALUE = "env-secret-Zq8yX2"
SECRET_FILE_VALUE = "file-secret-Pw3kLm"


def prepare_workdir(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``path`` with a lock file and a 0600 secret file; the secret environment
    variable set. Relative paths in GOOD_DATA resolve there."""
    (path / "images.lock.yaml").write_text(LOCK_TEXT)
    secrets_dir = path / "secrets"
    secrets_dir.mkdir()
    token = secrets_dir / "token"
    token.write_text(SECRET_FILE_VALUE + "\n")
    os.chmod(token, 0o600)
    monkeypatch.setenv("TFENV_TEST_REG_PW", SECRET_ENV_VALUE)
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """:func:`prepare_workdir` in the test's own temporary directory."""
    return prepare_workdir(tmp_path, monkeypatch)


@pytest.fixture
def good_data() -> dict:
    return copy.deepcopy(GOOD_DATA)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The runbooks' lab test runs last: it shares lab-5 with test_lab_tf_node.py and
    changes it the way an operator would (a rotated token, a retired container)."""
    last = [item for item in items if item.path.name == "test_lab_runbooks.py"]
    if last:
        items[:] = [item for item in items if item.path.name != "test_lab_runbooks.py"] + last
