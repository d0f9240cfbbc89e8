"""`tfenv validate` and the pyinfra pre-connect hook, run as real processes.

Each inventory points its hosts at a TCP listener on 127.0.0.1 that counts
connections: bad data must be rejected with zero connections made.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TFENV = [sys.executable, "-m", "tfenv.cli"]
PYINFRA = [sys.executable, "-m", "pyinfra"]


class CountingListener:
    """Accepts TCP connections on 127.0.0.1, counts and closes them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    counting = CountingListener()
    yield counting
    counting.close()


def write_fleet(root: Path, port: int, containers: str) -> Path:
    """An inventory of two hosts (both at the listener) plus group_data and lock."""
    (root / "group_data").mkdir()
    (root / "images.lock.yaml").write_text(
        "version: 1\nimages:\n  r.test/ml/tf:2.17.0:\n    digest: sha256:" + "c" * 64 + "\n"
    )
    (root / "inventory.py").write_text(
        textwrap.dedent(f"""
        gpu = [
            ("node-1", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}}}),
            ("node-2", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port},
                         "containers": {containers}}}),
        ]
        """)
    )
    (root / "group_data" / "all.py").write_text(
        'image_lock = "images.lock.yaml"\ngpu_count = 2\nssh_connect_retries = 0\n'
    )
    return root / "inventory.py"


GOOD_CONTAINERS = """{"dev": {"image": "r.test/ml/tf:2.17.0",
                          "user": {"name": "dev", "uid": 1500, "gid": 1500},
                          "gpus": [0, 1]}}"""
BAD_CONTAINERS = """{"dev": {"image": "r.test/ml/tf:latest",
                         "user": {"name": "dev", "uid": 1500, "gid": 1500},
                         "gpus": [0, 2]}}"""


def run(cmd: list[str], cwd: Path, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_help_lists_commands(tmp_path: Path) -> None:
    result = run([*TFENV, "--help"], tmp_path)
    assert result.returncode == 0
    assert "validate" in result.stdout and "secrets" in result.stdout


def test_validate_rejects_bad_data_without_connecting(tmp_path: Path, listener) -> None:
    inventory = write_fleet(tmp_path, listener.port, BAD_CONTAINERS)
    result = run([*TFENV, "validate", str(inventory)], tmp_path)
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert any(
        line.startswith("node-2: containers.dev.image: expected a pinned version tag")
        for line in lines
    ), result.stderr
    assert any(
        line.startswith("node-2: containers.dev.gpus: expected GPU indices 0..1") for line in lines
    ), result.stderr
    assert "node-1" not in result.stderr  # the valid host is not blamed
    assert "nothing was contacted" in result.stderr
    assert listener.accepted == 0


def test_validate_accepts_good_data(tmp_path: Path, listener) -> None:
    inventory = write_fleet(tmp_path, listener.port, GOOD_CONTAINERS)
    result = run([*TFENV, "validate", str(inventory)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 host(s) valid" in result.stdout
    assert listener.accepted == 0


def test_validate_missing_inventory_says_what_to_do(tmp_path: Path) -> None:
    result = run([*TFENV, "validate", "nope.py"], tmp_path)
    assert result.returncode == 1
    assert "nope.py not found" in result.stderr and "inventories/gpu.py" in result.stderr


def test_pyinfra_run_stops_before_connecting(tmp_path: Path, listener) -> None:
    inventory = write_fleet(tmp_path, listener.port, BAD_CONTAINERS)
    shutil.copy(REPO / "config.py", tmp_path / "config.py")
    (tmp_path / "deploy.py").write_text(
        "from pyinfra.operations import server\nserver.shell(name='noop', commands=['true'])\n"
    )
    result = run([*PYINFRA, "-y", str(inventory), "deploy.py"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no host was contacted" in output
    assert "node-2: containers.dev.image" in output
    assert listener.accepted == 0


def test_pyinfra_run_with_good_data_does_connect(tmp_path: Path, listener) -> None:
    """Control for the test above: the listener does see pyinfra's connections."""
    inventory = write_fleet(tmp_path, listener.port, GOOD_CONTAINERS)
    shutil.copy(REPO / "config.py", tmp_path / "config.py")
    (tmp_path / "deploy.py").write_text(
        "from pyinfra.operations import server\nserver.shell(name='noop', commands=['true'])\n"
    )
    result = run([*PYINFRA, "-y", str(inventory), "deploy.py"], tmp_path)
    assert "no host was contacted" not in result.stdout + result.stderr
    assert listener.accepted >= 1


def test_example_inventory_is_valid(tmp_path: Path) -> None:
    for part in ("inventories", "group_data", "locks"):
        shutil.copytree(REPO / part, tmp_path / part)
    missing = run([*TFENV, "validate", "inventories/gpu.py"], tmp_path)
    assert missing.returncode == 1
    assert "run: tfenv secrets init" in missing.stderr
    init = run([*TFENV, "secrets", "init", "inventories/gpu.py"], tmp_path)
    assert init.returncode == 0, init.stderr
    token = tmp_path / "secrets" / "jupyter_token_alice"
    assert oct(token.stat().st_mode & 0o777) == "0o600"
    assert token.read_text().strip() not in init.stdout + init.stderr
    result = run([*TFENV, "validate", "inventories/gpu.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 host(s) valid" in result.stdout
    again = run([*TFENV, "secrets", "init", "inventories/gpu.py"], tmp_path)
    assert "0 secret file(s) created" in again.stdout


def test_limit_checks_only_the_chosen_hosts(tmp_path: Path, listener) -> None:
    inventory = write_fleet(tmp_path, listener.port, BAD_CONTAINERS)
    only_good = run([*TFENV, "validate", str(inventory), "--limit", "node-1"], tmp_path)
    assert only_good.returncode == 0, only_good.stderr
    assert "1 host(s) valid" in only_good.stdout
    nothing = run([*TFENV, "validate", str(inventory), "--limit", "nope"], tmp_path)
    assert nothing.returncode == 1 and "matches no host or group" in nothing.stderr


def test_bad_data_on_100_hosts_is_one_short_message_without_traceback(
    tmp_path: Path, listener
) -> None:
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text("ssh_connect_retries = 0\n")
    (tmp_path / "inventory.py").write_text(
        f'gpu = [(f"node-{{i}}", {{"ssh_hostname": "127.0.0.1", "ssh_port": {listener.port}, '
        '"gpu_count": "many", "containers": {"dev": {"image": "r.test/tf:latest"}}}) '
        "for i in range(100)]\n"
    )
    shutil.copy(REPO / "config.py", tmp_path / "config.py")
    (tmp_path / "deploy.py").write_text(
        "from pyinfra.operations import server\nserver.shell(name='noop', commands=['true'])\n"
    )
    result = run([*PYINFRA, "-y", "inventory.py", "deploy.py"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert len(output.encode()) < 10_000, len(output)
    assert output.count("no host was contacted") == 1
    assert "node-0, node-1, node-2, node-3, node-4 (+95 more): gpu_count: expected" in output
    assert "problem(s) on 100 of 100 host(s)" in output
    assert "Connecting" not in output and listener.accepted == 0


def test_an_inventory_that_raises_shows_the_users_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "inventory.py").write_text("gpu = ['h1']\nx = 1 / 0\n")
    result = run([*TFENV, "validate", "inventory.py"], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "(inventory.py, line 2): ZeroDivisionError: division by zero" in result.stderr


def test_group_data_that_raises_shows_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "gpu.py").write_text('gpu_count = 8\nx = {}["missing"]\n')
    (tmp_path / "inventory.py").write_text("gpu = ['h1']\n")
    result = run([*TFENV, "validate", "inventory.py"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"({tmp_path / 'group_data' / 'gpu.py'}, line 2): KeyError: 'missing'" in result.stderr
