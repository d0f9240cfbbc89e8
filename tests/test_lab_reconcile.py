"""tfenv reconcile on a real 3-host lab (lab-7..lab-9, over real SSH).

One module fixture provisions the three hosts with tf_node. Then each drift
the issue lists is injected by hand on one host, found by ``tfenv reconcile``
(exit 2, the right host, area and field), fixed by ``--apply`` (or listed as
needing a person), and the next run exits 0; files on the checkpoint mount
and in the home directory are checked after every apply.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from lab_fixtures import REPO, ok_on_host, pyinfra_on_lab

from tfenv.lab.fleet import Lab

pytestmark = pytest.mark.lab

FIRST = 6  # 0-based: lab-7, lab-8, lab-9 (other modules use the hosts before them)
COUNT = 3
DRIFTED = FIRST + 1  # lab-8: where drift is injected
SECRET = "/etc/tfenv/secrets/dev/jupyter_token_dev"
KEYS = "/etc/tfenv/containers/dev/authorized_keys"
DRIVER_PACKAGES = ("nvidia-driver", "nvidia-kernel-open-dkms", "nvidia-smi", "libnvidia-ml1",
                   "nvidia-persistenced")  # fmt: skip


def names(state) -> list[str]:
    return [h.name for h in state.hosts[FIRST : FIRST + COUNT]]


def reconcile(lab: Lab, state, tmp: Path, *args: str, hosts: list[str] | None = None):
    """``tfenv reconcile inventories/lab.py --limit ... ARGS --json``: (exit code,
    report.json as a dict, stderr)."""
    limits = [arg for name in hosts or names(state) for arg in ("--limit", name)]
    env = {**os.environ, "TFENV_LAB_DIR": str(lab.directory), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", "from tfenv.cli import main; main()", "reconcile",
         "inventories/lab.py", *limits, "--state-dir", str(tmp / "state"),
         "--report-dir", str(tmp / "reports"), "--json", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    try:
        report = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        pytest.fail(f"not JSON on stdout:\n{result.stdout}\n{result.stderr}")
    return result.returncode, report, result.stderr


def items(report: dict, host: str) -> list[dict]:
    return report["hosts"][host]["items"]


def fingerprints(state) -> str:
    """sha256 of the files a researcher keeps: on the checkpoint mount and in the home."""
    return ok_on_host(
        state, DRIFTED,
        "sudo sha256sum /mnt/checkpoints/reconcile-kept.bin /var/lib/tfenv/containers/dev/home/kept.txt",  # noqa: E501
        timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fleet(lab_of, test_lab: Lab, tmp_path_factory):
    """lab-7..9 after a first tf_node run, with a researcher's files written;
    (lab state, state dir for reconcile, the files' fingerprints)."""
    state = lab_of(FIRST + COUNT, images=True)
    limits = [arg for name in names(state) for arg in ("--limit", name)]
    pyinfra_on_lab(test_lab, *limits, "deploys/tf_node.py", timeout=1800)
    ok_on_host(state, DRIFTED, (
        "sudo sh -c 'head -c 1048576 /dev/urandom > /mnt/checkpoints/reconcile-kept.bin' && "
        "sudo docker exec dev sh -c 'echo my notes > ~/kept.txt'"
    ), timeout=60)  # fmt: skip
    return state, tmp_path_factory.mktemp("reconcile"), fingerprints(state)


def test_three_clean_runs_each_exit_0(fleet, test_lab: Lab) -> None:
    state, tmp, _ = fleet
    for _ in range(3):
        code, report, stderr = reconcile(test_lab, state, tmp)
        assert code == 0, json.dumps(report, indent=1) + stderr
        assert report["totals"]["items"] == 0
        assert report["totals"]["checked"] == COUNT
    assert "3/3 host(s) checked" in stderr  # the progress line


# (id, injection run as root on lab-8, expected area, field fragment, apply fixes it)
INJECTIONS = [
    ("driver-upgraded", "apt-mark unhold " + " ".join(DRIVER_PACKAGES) + " >/dev/null && "
     "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "
     "--allow-change-held-packages " + " ".join(f"{p}=550.144.03-1" for p in DRIVER_PACKAGES),
     "driver", "nvidia-driver.version", True),
    ("runtime-removed", "echo '{}' > /etc/docker/daemon.json", "daemon-json", "runtimes.nvidia",
     True),
    ("docker-stopped", "systemctl stop docker.socket docker", "docker", "running", True),
    ("container-stopped", "docker stop -t 1 dev", "containers", "dev.running", True),
    ("restart-policy", "docker update --restart no dev", "containers", "dev.restart", True),
    ("secret-mode", f"chmod 0644 {SECRET}", "secrets", SECRET, True),
    ("secret-content", f"echo changed-behind-our-back > {SECRET}", "secrets", SECRET, True),
    ("nfs-unmounted", "systemctl stop mnt-checkpoints.mount", "nfs", "/mnt/checkpoints.mounted",
     True),
    ("authorized-keys", f"echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5 intruder' >> {KEYS}",
     "secrets", KEYS, True),
    ("undeclared-container", "docker run -d -q --name stray --label tfenv.managed=true "
     "$(docker inspect -f '{{.Config.Image}}' dev) sleep infinity", "undeclared", "stray",
     False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("inject", "area", "field", "fixable"),
    [pytest.param(*case[1:], id=case[0]) for case in INJECTIONS],
)
def test_injected_drift_is_reported_then_applied(
    fleet, test_lab: Lab, inject: str, area: str, field: str, fixable: bool
) -> None:
    state, tmp, kept = fleet
    host = names(state)[1]
    ok_on_host(state, DRIFTED, f"sudo sh -c {json.dumps(inject)}", timeout=600)
    code, report, stderr = reconcile(test_lab, state, tmp)
    assert code == 2, json.dumps(report, indent=1) + stderr
    drifted = {name for name, h in report["hosts"].items() if h["items"]}
    assert drifted == {host}, json.dumps(report, indent=1)
    found = [i for i in items(report, host) if i["area"] == area and field in i["field"]]
    assert found, json.dumps(items(report, host), indent=1)
    assert report["hosts"][host]["areas"][area] in ("drift", "needs-a-person")

    code, report, stderr = reconcile(test_lab, state, tmp, "--apply")
    assert fingerprints(state) == kept  # the researcher's files survive every apply
    if fixable:
        assert code == 0, json.dumps(report, indent=1) + stderr
        assert report["hosts"][host]["applied"] == "applied"
        code, report, stderr = reconcile(test_lab, state, tmp)
        assert code == 0, json.dumps(report, indent=1) + stderr
    else:
        assert code == 2
        left = items(report, host)
        assert [i["action"] for i in left] == ["person"], left
        assert "docker rm -f stray" in left[0]["command"]
        ok_on_host(state, DRIFTED, "sudo docker inspect stray >/dev/null", timeout=60)  # kept
        ok_on_host(state, DRIFTED, "sudo docker rm -f stray >/dev/null", timeout=60)
        assert reconcile(test_lab, state, tmp)[0] == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"env": {"TFENV_EXTRA": "1"}}, "dev.env", id="container-extra-env"),
        pytest.param({"image": "LAB2"}, "dev.image", id="image-other-digest"),
    ],
)
def test_a_container_recreated_unlike_its_declaration_is_reported_then_applied(
    fleet, test_lab: Lab, change: dict, field: str
) -> None:
    """A container recreated with other options (here by a deploy of other data)."""
    state, tmp, kept = fleet
    host = names(state)[1]
    if change.get("image") == "LAB2":  # the same TF release, another digest
        change = {"image": f"{state.registry['host']}/tfenv/tensorflow:2.17.1-lab2"}
    os.environ["TFENV_TEST_CHANGES"] = json.dumps({"containers.dev": change})
    try:
        pyinfra_on_lab(test_lab, "--limit", host, "tests/lab_deploys/tf_node_with.py",
                       timeout=900)  # fmt: skip
    finally:
        os.environ.pop("TFENV_TEST_CHANGES", None)
    code, report, stderr = reconcile(test_lab, state, tmp)
    assert code == 2, stderr
    assert any(i["field"].startswith(field) for i in items(report, host)), items(report, host)
    code, report, stderr = reconcile(test_lab, state, tmp, "--apply")
    assert code == 0, json.dumps(report, indent=1) + stderr
    assert fingerprints(state) == kept
    assert reconcile(test_lab, state, tmp)[0] == 0


def test_history_keeps_first_seen_and_fixed_at(fleet, test_lab: Lab) -> None:
    state, tmp, _ = fleet
    host = names(state)[1]
    env = {**os.environ, "TFENV_LAB_DIR": str(test_lab.directory)}
    shown = subprocess.run(
        [sys.executable, "-c", "from tfenv.cli import main; main()", "reconcile", "history",
         host, "--state-dir", str(tmp / "state")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "dev.restart" in shown and "runtimes.nvidia" in shown, shown
    assert "open" not in shown.split()  # every injected drift was fixed


def test_an_unreachable_host_gives_exit_1_in_all_three_reports(fleet, test_lab: Lab) -> None:
    state, tmp, _ = fleet
    down = state.hosts[FIRST + 2]
    subprocess.run(["docker", "stop", "-t", "0", down.container], check=True, capture_output=True)
    try:
        code, report, stderr = reconcile(test_lab, state, tmp)
    finally:
        subprocess.run(["docker", "start", down.container], check=True, capture_output=True)
    assert code == 1, stderr
    assert report["hosts"][down.name]["status"] == "unreachable"
    assert report["hosts"][down.name]["error"]
    others = [n for n in names(state) if n != down.name]
    assert all(report["hosts"][n]["status"] == "clean" for n in others), report
    html = (tmp / "reports" / "report.html").read_text()
    assert f'data-host="{down.name}"' in html and "cell-unreachable" in html
    prom = (tmp / "reports" / "tfenv.prom").read_text()
    assert f'tfenv_reconcile_host_checked{{host="{down.name}"}} 0' in prom, prom
    assert "tfenv_reconcile_last_run_exit_code 1" in prom
    saved = json.loads((tmp / "reports" / "report.json").read_text())
    assert saved["hosts"][down.name]["checked"] is False


def test_three_shards_partition_the_hosts_and_merge_to_the_whole(
    fleet, test_lab: Lab, tmp_path: Path
) -> None:
    state, _, _ = fleet
    code, whole, _ = reconcile(test_lab, state, tmp_path / "whole")
    assert code == 0
    shard_files = []
    seen: list[str] = []
    for k in (1, 2, 3):
        run_dir = tmp_path / f"shard{k}"
        code, report, _ = reconcile(test_lab, state, run_dir, "--shard", f"{k}/3")
        assert code == 0
        seen += list(report["hosts"])
        shard_files.append(str(run_dir / "reports" / "report.json"))
    assert sorted(seen) == sorted(names(state))  # each host in exactly one shard
    subprocess.run(
        [sys.executable, "-c", "from tfenv.cli import main; main()", "reconcile", "merge",
         *shard_files, "--report-dir", str(tmp_path / "merged")],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    for report in (whole, merged):
        for key in ("started", "finished", "duration_s", "shard"):
            report.pop(key)
    assert merged == whole


def test_a_bad_inventory_exits_3_and_connects_to_nothing(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[object] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(listener.accept())
        except OSError:
            return

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    inventory = tmp_path / "bad.py"
    inventory.write_text(
        f"gpu = [('bad-1', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}, "
        "'nvidia_driver': {'version': '550.127.05; rm -rf /'}})]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "from tfenv.cli import main; main()", "reconcile", str(inventory),
         "--state-dir", str(tmp_path / "state")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    listener.close()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "bad-1" in result.stderr and "nvidia_driver" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert accepted == []
