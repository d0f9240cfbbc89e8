"""Every bad input of the model's suites, run through pyinfra itself, as a user would.

Each case (tests/test_model.py: REJECTIONS and ECHO_CASES) becomes a one-host
inventory whose host points at a TCP listener on 127.0.0.1 that counts
connections, and `pyinfra -y INVENTORY deploy.py` runs against it. Each must
end with exit 1, a clean message naming the host, the field and what was
expected (the REJECTIONS), no traceback, no secret value (the secrets hold
markers) and no connection attempt.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GOOD_DATA, SECRET_ENV_VALUE, SECRET_FILE_VALUE
from test_cli_validate import CountingListener
from test_model import ECHO_CASES, HOST, PASTED_VALUES, REJECTIONS, bad_data

REPO = Path(__file__).resolve().parent.parent
DEPLOY = "from pyinfra.operations import server\nserver.shell(name='noop', commands=['true'])\n"


@pytest.fixture(scope="module")
def listener():
    counting = CountingListener()
    yield counting
    counting.close()


def run_pyinfra(workdir: Path, data: dict, port: int) -> str:
    """``pyinfra -y inventory.py deploy.py`` in ``workdir``; asserts exit 1, no
    traceback, no secret marker; returns the output."""
    host_data = {**data, "ssh_hostname": "127.0.0.1", "ssh_port": port,
                 "ssh_connect_retries": 0}  # fmt: skip
    (workdir / "inventory.py").write_text(f"gpu = [({HOST!r}, {host_data!r})]\n")
    (workdir / "deploy.py").write_text(DEPLOY)
    shutil.copy(REPO / "config.py", workdir / "config.py")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventory.py", "deploy.py"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    assert "no host was contacted" in output, output
    for marker in (SECRET_ENV_VALUE, SECRET_FILE_VALUE, *PASTED_VALUES):
        assert marker not in output
    return output


@pytest.mark.parametrize(
    ("mutate", "field", "words"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_bad_data_stops_pyinfra_before_any_connection(
    workdir: Path, listener, mutate, field, words
) -> None:
    output = run_pyinfra(workdir, bad_data(mutate, workdir), listener.port)
    lines = [line for line in output.splitlines() if line.startswith(f"{HOST}: ")]
    assert any(field in line and words in line and ": expected " in line for line in lines), output
    assert listener.accepted == 0


@pytest.mark.parametrize("mutate", [c[1] for c in ECHO_CASES], ids=[c[0] for c in ECHO_CASES])
def test_a_pasted_secret_is_never_echoed_by_pyinfra(workdir: Path, listener, mutate) -> None:
    data = copy.deepcopy(GOOD_DATA)
    mutate(data)
    run_pyinfra(workdir, data, listener.port)
    assert listener.accepted == 0


def test_the_suite_is_large_enough() -> None:
    assert len(REJECTIONS) + len(ECHO_CASES) >= 80
