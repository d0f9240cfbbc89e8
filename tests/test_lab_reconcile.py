"""tfenv reconcile on a real 3-host lab (lab-10..lab-12, over real SSH).

The hosts are the rollout modules' first three (a bare host's first deploy costs
about a minute of the machine's two cores; sharing saves three): one module fixture
brings them to the lab's declared state with tf_node, from bare (this module runs
first, in file order) or from whatever the rollouts left (another image, another
driver) when it runs after them. Then each drift
the issue lists is injected by hand on one host, found by ``tfenv reconcile``
(exit 2, the right host, area and field), fixed by ``--apply`` (or listed as
needing a person), and the next run exits 0; files on the checkpoint mount
and in the home directory are checked after every apply.

Image: the lab TF release lab1 (real TensorFlow), as the rollout hosts it shares
already hold it: reusing them costs one replacement each, where hosts of a small
image would cost three first deploys; the reconcile's deep check runs its TF op.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lab_fixtures import (
    CLOSE_SESSION,
    REPO,
    SESSION,
    ok_on_host,
    on_host,
    pyinfra_on_lab,
    start_host_again,
)

from tfenv.lab.fleet import Lab

pytestmark = pytest.mark.lab

FIRST = 9  # 0-based: lab-10, lab-11, lab-12 (the rollout modules' hosts, shared)
COUNT = 3
DRIFTED = FIRST + 1  # lab-11: where drift is injected
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


def dry_changes(lab: Lab, hosts: list[str]) -> dict[str, list[str]]:
    """What ``pyinfra --dry --json ... deploys/tf_node.py`` says it would change: host ->
    the operations (conditional ones, such as the reboot, left out: they decide at run time)."""
    limits = [arg for name in hosts for arg in ("--limit", name)]
    env = {**os.environ, "TFENV_LAB_DIR": str(lab.directory), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "--dry", "--json", "inventories/lab.py", *limits,
         "deploys/tf_node.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    plan = json.loads(result.stdout[result.stdout.index("{") :])["plan"]
    changes: dict[str, list[str]] = {name: [] for name in hosts}
    for operation in plan:
        for name in operation["hosts_with_change"]:
            changes[name].append(operation["name"])
    return changes


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
    """lab-10..12 after a tf_node run, with a researcher's files written;
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
    assert "3/3 host(s) done" in stderr  # the progress line
    assert dry_changes(test_lab, names(state)) == {name: [] for name in names(state)}


def _execs_during(state, action) -> list[str]:
    """Container execs and starts Docker logged on lab-8 while ``action`` ran, less
    the container's own HEALTHCHECK (Docker runs it every few seconds)."""
    check = json.loads(ok_on_host(state, DRIFTED, (
        "sudo docker inspect -f '{{json .Config.Healthcheck.Test}}' dev"), timeout=60))  # fmt: skip
    own = f"exec_create: /bin/sh -c {check[1]}" if check and check[0] == "CMD-SHELL" else None
    since = ok_on_host(state, DRIFTED, "date +%s.%N", timeout=60).strip()
    action()
    until = ok_on_host(state, DRIFTED, "date +%s.%N", timeout=60).strip()
    events = ok_on_host(state, DRIFTED, (
        f"sudo docker events --since {since} --until {until} --filter type=container "
        "--filter event=exec_create --filter event=start --format '{{.Action}}'"
    ), timeout=60)  # fmt: skip
    return [line for line in events.splitlines() if line.strip() and line != own]


def test_only_deep_execs_in_containers_and_its_probe_passes(fleet, test_lab: Lab) -> None:
    state, tmp, _ = fleet
    results = {}
    quiet = _execs_during(state, lambda: results.update(plain=reconcile(test_lab, state, tmp)))
    deep = _execs_during(state, lambda: results.update(deep=reconcile(test_lab, state, tmp,
                                                                      "--deep")))  # fmt: skip
    assert results["plain"][0] == 0 and results["deep"][0] == 0, results
    assert quiet == [], quiet  # nothing started or exec'd without --deep
    assert any(action.startswith("exec_create") for action in deep), deep
    assert results["deep"][1]["deep"] is True


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
    ("undeclared-container", "docker run -d --name stray --label tfenv.managed=true "
     "$(docker inspect -f '{{.Config.Image}}' dev) sleep infinity >/dev/null",
     "undeclared", "stray", False),
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
    ok_on_host(state, DRIFTED, f"sudo sh -c {shlex.quote(inject)}", timeout=600)
    code, report, stderr = reconcile(test_lab, state, tmp)
    assert code == 2, json.dumps(report, indent=1) + stderr
    drifted = {name for name, h in report["hosts"].items() if h["items"]}
    assert drifted == {host}, json.dumps(report, indent=1)
    found = [i for i in items(report, host) if i["area"] == area and field in i["field"]]
    assert found, json.dumps(items(report, host), indent=1)
    assert report["hosts"][host]["areas"][area] in ("drift", "needs-a-person")
    # Drift a deploy fixes exactly when pyinfra --dry of tf_node would change something.
    fixes = [i for i in items(report, host) if i["action"] == "apply"]
    assert bool(fixes) == bool(dry_changes(test_lab, [host])[host]) == fixable

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


def test_apply_never_recreates_a_container_in_use_unless_forced(fleet, test_lab: Lab) -> None:
    state, tmp, kept = fleet
    host = names(state)[1]
    dev_id = "sudo docker inspect -f '{{.Id}}' dev"
    ok_on_host(state, DRIFTED, "cat > /tmp/dev_key && chmod 600 /tmp/dev_key",
               Path(state.key).read_text())  # fmt: skip
    ok_on_host(state, DRIFTED, "rm -f /tmp/session.out; " + SESSION, timeout=60)
    try:
        before = ok_on_host(state, DRIFTED, dev_id, timeout=60)
        ok_on_host(state, DRIFTED, "sudo docker update --restart no dev >/dev/null", timeout=60)
        code, report, stderr = reconcile(test_lab, state, tmp, "--apply")
        assert code == 2, json.dumps(report, indent=1) + stderr
        assert report["hosts"][host]["applied"] is None  # nothing on it --apply may change
        left = [i for i in items(report, host) if i["field"] == "dev.restart"]
        assert [i["action"] for i in left] == ["person"], items(report, host)
        assert "--force-busy" in left[0]["command"]
        assert ok_on_host(state, DRIFTED, dev_id, timeout=60) == before  # not recreated
        code, report, stderr = reconcile(test_lab, state, tmp, "--apply", "--force-busy")
        assert code == 0, json.dumps(report, indent=1) + stderr
        assert ok_on_host(state, DRIFTED, dev_id, timeout=60) != before
        assert fingerprints(state) == kept
    finally:
        on_host(state, DRIFTED, CLOSE_SESSION, timeout=60)


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
        start_host_again(test_lab, state, FIRST + 2)
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
    code, whole, stderr = reconcile(test_lab, state, tmp_path / "whole")
    assert code == 0, json.dumps(whole, indent=1) + stderr
    shard_files = []
    seen: list[str] = []
    for k in (1, 2, 3):
        run_dir = tmp_path / f"shard{k}"
        code, report, stderr = reconcile(test_lab, state, run_dir, "--shard", f"{k}/3")
        assert code == 0, json.dumps(report, indent=1) + stderr
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


def test_a_second_run_on_the_same_state_dir_waits_for_none_and_exits_1(
    fleet, test_lab: Lab
) -> None:
    state, tmp, _ = fleet
    lock = tmp / "state" / "reconcile.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "60"])
    try:
        time.sleep(0.5)
        code, report, stderr = reconcile(test_lab, state, tmp)
    finally:
        holder.kill()
    assert code == 1 and report == {}, stderr
    assert "another tfenv reconcile" in stderr and "checked nothing" in stderr


CONTROL_INVENTORY = """\
control = [("self", {
    "ssh_hostname": "127.0.0.1", "ssh_port": 22, "ssh_user": "tfenv",
    "ssh_key": "/var/lib/tfenv-reconcile/.ssh/id_ed25519",
    "ssh_known_hosts_file": "/var/lib/tfenv-reconcile/.ssh/known_hosts",
    "ssh_strict_host_key_checking": "yes", "_sudo": True,
})]
"""
TFENV_WRAPPER = """\
#!/bin/sh
# tfenv on the lab's control node: this machine's packages, the host's python3.11.
export PYTHONPATH=/opt/tfenv/src:/opt/tfenv/site
exec /usr/bin/python3 -c 'from tfenv.cli import main; main()' "$@"
"""


def _install_tfenv_on(machine: str) -> None:
    """Copy tfenv and its Python packages into a lab host (it has no network)."""
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    skip = ["--exclude=selenium*", "--exclude=ruff*", "--exclude=hypothesis*",
            "--exclude=mutmut*", "--exclude=__pycache__", "--exclude=*.pth"]  # fmt: skip
    subprocess.run(["docker", "exec", machine, "mkdir", "-p", "/opt/tfenv/site", "/opt/tfenv/src",
                    "/opt/tfenv/bin", "/opt/fleet/inventories", "/opt/fleet/deploys"],
                   check=True)  # fmt: skip
    for source, target in ((site / "site-packages", "/opt/tfenv/site"), (REPO, "/opt/tfenv/src")):
        parts = ["."] if target.endswith("site") else ["tfenv"]
        pack = subprocess.Popen(["tar", "-C", str(source), *skip, "-cf", "-", *parts],
                                stdout=subprocess.PIPE)  # fmt: skip
        subprocess.run(["docker", "exec", "-i", machine, "tar", "-xf", "-", "-C", target],
                       stdin=pack.stdout, check=True)  # fmt: skip
        assert pack.wait() == 0
    files = {
        "/opt/tfenv/bin/tfenv": TFENV_WRAPPER,
        "/opt/fleet/config.py": (REPO / "config.py").read_text(),
        "/opt/fleet/deploys/tf_node.py": (REPO / "deploys" / "tf_node.py").read_text(),
        "/opt/fleet/inventories/control.py": CONTROL_INVENTORY,
    }
    for path, text in files.items():
        subprocess.run(["docker", "exec", "-i", machine, "sh", "-c", f"cat > {path}"],
                       input=text, text=True, check=True)  # fmt: skip
    subprocess.run(["docker", "exec", machine, "chmod", "0755", "/opt/tfenv/bin/tfenv"], check=True)


def test_the_nightly_timer_runs_reconcile_as_a_non_root_user(fleet, test_lab: Lab) -> None:
    """lab-7 as the control node: the timer deploy, then its service run by hand."""
    state, _, _ = fleet
    control = state.hosts[FIRST]
    _install_tfenv_on(control.container)
    data = {"inventory": "inventories/control.py", "workdir": "/opt/fleet",
            "schedule": "*-*-* 02:30:00", "randomized_delay": "10min",
            "report_dir": "/var/lib/tfenv-reconcile/reports"}  # fmt: skip
    os.environ["TFENV_TEST_TIMER"] = json.dumps(data)
    try:
        first = pyinfra_on_lab(test_lab, "--limit", control.name,
                               "tests/lab_deploys/reconcile_timer_with.py")  # fmt: skip
        again = pyinfra_on_lab(test_lab, "--limit", control.name,
                               "tests/lab_deploys/reconcile_timer_with.py")  # fmt: skip
    finally:
        os.environ.pop("TFENV_TEST_TIMER", None)
    assert "Success" in first
    assert f"[{control.name}] Success" not in again and "No changes" in again, again
    # The service user reaches the host it checks with its own key (as on a real node).
    ok_on_host(state, FIRST, (
        "sudo -u tfenv-reconcile sh -c 'mkdir -p -m 0700 ~/.ssh && [ -f ~/.ssh/id_ed25519 ] || "
        "ssh-keygen -q -t ed25519 -N \"\" -f ~/.ssh/id_ed25519 && "
        "echo \"127.0.0.1 $(cut -d\" \" -f1,2 /etc/ssh/lab/ssh_host_ed25519_key.pub)\" "
        "> ~/.ssh/known_hosts' && mkdir -p -m 0700 ~/.ssh && "
        "sudo cat /var/lib/tfenv-reconcile/.ssh/id_ed25519.pub >> ~/.ssh/authorized_keys && "
        "chmod 0600 ~/.ssh/authorized_keys"
    ), timeout=60)  # fmt: skip
    timers = ok_on_host(state, FIRST, "systemctl list-timers --all tfenv-reconcile.timer",
                        timeout=60)  # fmt: skip
    assert "tfenv-reconcile.timer" in timers and "tfenv-reconcile.service" in timers, timers
    run = on_host(state, FIRST, "sudo systemctl start tfenv-reconcile.service", timeout=600)
    shown = ok_on_host(state, FIRST, (
        "systemctl show -p Result -p ExecMainStatus tfenv-reconcile.service; "
        "sudo journalctl -u tfenv-reconcile.service --no-pager -n 30; "
        "sudo ls -ln /var/lib/tfenv-reconcile/reports; "
        "sudo cat /var/lib/tfenv-reconcile/reports/report.json"
    ), timeout=60)  # fmt: skip
    assert run.returncode == 0, shown + run.stderr
    assert "Result=success" in shown, shown
    user_id = ok_on_host(state, FIRST, "id -u tfenv-reconcile", timeout=60).strip()
    listing = [line.split() for line in shown.splitlines() if line.endswith((".json", ".html",
                                                                            ".prom"))]  # fmt: skip
    assert sorted(line[-1] for line in listing) == ["report.html", "report.json", "tfenv.prom"]
    assert all(line[2] == user_id for line in listing), listing  # written as the service user
    report = json.loads(shown[shown.index("{") :])
    assert report["hosts"]["self"]["checked"] is True, report
