"""The busy guard's shell functions run for real by ``sh`` against a ``docker``
stand-in on PATH: SSH sessions read from a container's ``net/tcp`` and ``net/tcp6``
(a directory in tmp_path stands in for ``/proc/PID``), and Jupyter's kernels asked
from a Jupyter API stand-in on 127.0.0.1, judged against the idle minutes.

No seam in tfenv: the stand-in's ``docker inspect`` answers a PID of
``../TMP/proc-of-dev``, so the functions' ``/proc/"$PID"/net/tcp`` is
``/proc/../TMP/proc-of-dev/net/tcp``, that is the tmp_path directory."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tfenv.containers.busy import BUSY_FUNCTIONS, busy_reasons

SSH_PORT = 2222  # 08AE
FAKE_DOCKER = r"""#!/bin/sh
case "$1" in
inspect) printf '%s\n' "$FAKE_INSPECT" ;;
exec)
  shift 2  # exec CONTAINER
  [ "$1" = python3 ] && { shift; exec "$FAKE_PYTHON" "$@"; }
  echo "unexpected docker exec $*" >&2; exit 99 ;;
*) echo "unexpected docker $*" >&2; exit 99 ;;
esac
"""
TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode"
)
TCP6_HEADER = (
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
)


def tcp_line(n: int, local: str, remote: str, state: str) -> str:
    return (
        f"  {n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  1000 "
        "0 4242 1 0000000000000000 20 4 30 10 -1"
    )


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """tmp_path with bin/docker (the stand-in) and proc-of-dev/net/ (empty tcp files)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    net = tmp_path / "proc-of-dev" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(TCP_HEADER + "\n")
    (net / "tcp6").write_text(TCP6_HEADER + "\n")
    return tmp_path


def run_busy(host: Path, idle_minutes: int, no_exec: bool, **env: str) -> list[str]:
    """``tfenv_busy dev IDLE`` as the TfNode fact and the replace command run it."""
    pid = ".." + str(host / "proc-of-dev")  # /proc/../TMP/proc-of-dev
    assert " " not in pid
    inspect = f"true {pid} 0123456789ab 0 {SSH_PORT}"  # running, pid, id, no GPUs, ssh port
    script = (
        ("tfenv_no_exec=1\n" if no_exec else "")
        + BUSY_FUNCTIONS
        + f"tfenv_gpu_apps; tfenv_busy dev {idle_minutes}\n"
    )
    full_env = {**os.environ, "PATH": f"{host / 'bin'}{os.pathsep}{os.environ['PATH']}",
                "FAKE_INSPECT": inspect, "FAKE_PYTHON": sys.executable, **env}  # fmt: skip
    done = subprocess.run(["sh", "-c", script], env=full_env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout.splitlines()


# --- 2. SSH sessions, IPv4 and IPv6 -------------------------------------------------------


def test_an_ipv6_ssh_session_in_tcp6_keeps_the_container_busy(host: Path) -> None:
    net = host / "proc-of-dev" / "net"
    any6 = "00000000000000000000000000000000"
    with (net / "tcp6").open("a") as tcp6:
        for line in [
            tcp_line(0, f"{any6}:08AE", f"{any6}:0000", "0A"),  # sshd listening
            # 2001:db8::1 port 53518, established on the SSH port: a session
            tcp_line(1, f"{any6}:08AE", "B80D0120000000000000000001000000:D10E", "01"),
            # ::1 (the health probe): not a session
            tcp_line(2, f"{any6}:08AE", "00000000000000000000000001000000:A000", "01"),
            # another port (Jupyter 8888): not SSH
            tcp_line(3, f"{any6}:22B8", "B80D0120000000000000000002000000:D10F", "01"),
            # a session that is closing (TIME_WAIT): gone
            tcp_line(4, f"{any6}:08AE", "B80D0120000000000000000003000000:D110", "06"),
        ]:
            tcp6.write(line + "\n")

    lines = run_busy(host, 30, no_exec=True)

    assert lines == ["ssh B80D0120000000000000000001000000:D10E"]
    assert busy_reasons(lines, 30) == ["an SSH session from 2001:db8::1:53518"]


def test_an_ipv4_mapped_session_in_tcp6_counts_but_its_loopback_does_not(host: Path) -> None:
    net = host / "proc-of-dev" / "net"
    any6 = "00000000000000000000000000000000"
    with (net / "tcp6").open("a") as tcp6:
        tcp6.write(
            tcp_line(0, f"{any6}:08AE", "0000000000000000FFFF00000100A8C0:D10E", "01") + "\n"
        )
        tcp6.write(
            tcp_line(1, f"{any6}:08AE", "0000000000000000FFFF00000100007F:D10F", "01") + "\n"
        )

    lines = run_busy(host, 30, no_exec=True)

    assert busy_reasons(lines, 30) == ["an SSH session from 192.168.0.1:53518"]


def test_sessions_in_tcp_and_tcp6_are_both_counted(host: Path) -> None:
    net = host / "proc-of-dev" / "net"
    with (net / "tcp").open("a") as tcp:
        tcp.write(tcp_line(0, "00000000:08AE", "0100A8C0:D10E", "01") + "\n")
        tcp.write(tcp_line(1, "00000000:08AE", "0100007F:D10F", "01") + "\n")  # loopback
    with (net / "tcp6").open("a") as tcp6:
        tcp6.write(
            tcp_line(0, "0" * 32 + ":08AE", "B80D0120000000000000000001000000:D10E", "01") + "\n"
        )

    lines = run_busy(host, 30, no_exec=True)

    assert busy_reasons(lines, 30) == [
        "an SSH session from 192.168.0.1:53518",
        "an SSH session from 2001:db8::1:53518",
    ]


def test_no_session_is_idle(host: Path) -> None:
    assert run_busy(host, 30, no_exec=True) == []


# --- 3. Jupyter kernels: idle minutes, not seconds ------------------------------------------

TOKEN = "jupyter-token-for-tests"


class Jupyter(BaseHTTPRequestHandler):
    kernels: ClassVar[list[dict]] = []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"token {TOKEN}":
            self.send_response(403)
            self.end_headers()
            return
        if self.path != "/api/kernels":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps(self.kernels).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def jupyter(host: Path) -> Iterator[dict[str, str]]:
    """A Jupyter API stand-in on 127.0.0.1; the environment the container would give
    the probe (its port, its token file)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Jupyter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token_file = host / "token"
    token_file.write_text(TOKEN + "\n")
    yield {"JUPYTER_PORT": str(server.server_port), "JUPYTER_TOKEN_FILE": str(token_file)}
    server.shutdown()
    server.server_close()


def ago(seconds: int) -> str:
    when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as Jupyter writes it


def kernel_lines(lines: list[str]) -> dict[str, tuple[str, int]]:
    """kernel id -> (state, age in s), from the probe's lines."""
    found = {}
    for line in lines:
        kind, kernel, state, age = line.split()
        assert kind == "kernel"
        found[kernel] = (state, int(age))
    return found


def test_a_kernel_active_minutes_ago_within_the_idle_minutes_is_busy(
    host: Path, jupyter: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Jupyter, "kernels", [
        {"id": "aaaaaaaa-1111", "execution_state": "idle", "last_activity": ago(300)},
        {"id": "bbbbbbbb-2222", "execution_state": "idle", "last_activity": ago(2 * 3600)},
        {"id": "cccccccc-3333", "execution_state": "busy", "last_activity": ago(5)},
    ])  # fmt: skip

    lines = run_busy(host, 30, no_exec=False, **jupyter)

    found = kernel_lines(lines)
    assert sorted(found) == ["aaaaaaaa", "cccccccc"]  # not the one idle for 2 hours
    state, age = found["aaaaaaaa"]
    assert state == "idle" and 299 <= age <= 330
    reasons = busy_reasons(lines, 30)
    assert reasons == [
        f"Jupyter kernel aaaaaaaa was active {age} s ago (idle after 30 min)",
        "Jupyter kernel cccccccc is busy",
    ]


def test_a_kernel_idle_longer_than_the_idle_minutes_is_not_busy(
    host: Path, jupyter: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Jupyter, "kernels", [
        {"id": "aaaaaaaa-1111", "execution_state": "idle", "last_activity": ago(11 * 60)},
    ])  # fmt: skip
    assert run_busy(host, 10, no_exec=False, **jupyter) == []
    assert kernel_lines(run_busy(host, 12, no_exec=False, **jupyter))["aaaaaaaa"][0] == "idle"


def test_a_kernel_whose_last_activity_cannot_be_read_is_busy(
    host: Path, jupyter: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Facts never guess: an idle kernel with no readable time of last activity counts."""
    monkeypatch.setattr(Jupyter, "kernels", [
        {"id": "dddddddd-4444", "execution_state": "idle", "last_activity": "yesterday"},
    ])  # fmt: skip
    lines = run_busy(host, 30, no_exec=False, **jupyter)
    assert kernel_lines(lines)["dddddddd"] == ("idle", -1)
    assert busy_reasons(lines, 30) == [
        "Jupyter kernel dddddddd: its last activity could not be read"
    ]


def test_idle_minus_one_lists_every_kernel_with_its_age(
    host: Path, jupyter: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Jupyter, "kernels", [
        {"id": "aaaaaaaa-1111", "execution_state": "idle", "last_activity": ago(2 * 3600)},
    ])  # fmt: skip
    found = kernel_lines(run_busy(host, -1, no_exec=False, **jupyter))
    assert found["aaaaaaaa"][0] == "idle" and 7199 <= found["aaaaaaaa"][1] <= 7230


def test_with_no_exec_set_no_kernel_is_asked(
    host: Path, jupyter: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Jupyter, "kernels", [
        {"id": "cccccccc-3333", "execution_state": "busy", "last_activity": ago(5)},
    ])  # fmt: skip
    assert run_busy(host, 30, no_exec=True, **jupyter) == []
    asked = kernel_lines(run_busy(host, 30, no_exec=False, **jupyter))
    assert list(asked) == ["cccccccc"] and asked["cccccccc"][0] == "busy"
