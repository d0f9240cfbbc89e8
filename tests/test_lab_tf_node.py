"""deploys/tf_node.py on a real lab host, end to end, over real SSH.

One host (the lab's 5th, fresh) goes from bare to a running dev container
that runs with least privilege; then each declared change recreates exactly
that container and names the field, and the researcher's home (a file, a git
repository with staged, unstaged and untracked changes and a stash, a venv)
and checkpoints survive byte for byte; a container in use (SSH session,
busy Jupyter kernel, GPU process) is replaced only as its policy says; a
failed pull leaves the old container running; no secret value shows up anywhere.

Image: the lab TF release lab1 (real TensorFlow and Jupyter): the dev container, its
TF op and its Jupyter kernel are the subject. Its second host (lab-6, the fault tests)
runs the same, as a fleet's second host would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from lab_fixtures import (
    CLOSE_SESSION,
    SESSION,
    ok_on_host,
    on_host,
    one_space_after_host,
    pyinfra_on_lab,
    tfenv_cli,
)

from tfenv.lab.fleet import Lab, ssh_command

pytestmark = pytest.mark.lab

REPO_TESTS = Path(__file__).resolve().parent
HOST = 4  # 0-based: lab-5
DEV_SSH = 2222


def deploy(
    lab: Lab, host: str, *flags: str, changes: dict | None = None, succeed: bool | None = True
):
    script = "tests/lab_deploys/tf_node_with.py" if changes else "deploys/tf_node.py"
    os.environ["TFENV_TEST_CHANGES"] = json.dumps(changes or {})
    try:
        return pyinfra_on_lab(lab, *flags, "--limit", host, script, succeed=succeed, timeout=900)
    finally:
        os.environ.pop("TFENV_TEST_CHANGES", None)


def secret_values(state) -> dict[str, str]:
    return {
        "registry password": Path(state.registry["password_file"]).read_text().strip(),
        "jupyter token": Path(state.secrets["jupyter_token_dev"]).read_text().strip(),
    }


def container(state, name: str = "dev") -> dict:
    out = ok_on_host(state, HOST, f"sudo docker inspect {name}", timeout=60)
    return json.loads(out)[0]


@pytest.fixture(scope="module")
def node(tf_node_host):
    """lab-5 after a first tf_node run (the expensive part, shared by the tests below
    and, at the end of the session, by the runbooks' test)."""
    return tf_node_host


def test_first_run_brings_a_working_dev_container(node, test_lab: Lab) -> None:
    state, _, first = node
    assert "dev: running, healthy, sshd answers, Jupyter answers with the token only" in first
    assert f"{state.gpus_per_host} GPU(s) inside, TensorFlow op ok" in first
    info = container(state)
    assert info["Config"]["Image"].startswith(f"{state.registry['host']}/tfenv/tensorflow@sha256:")
    assert info["State"]["Health"]["Status"] == "healthy"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["JUPYTER_TOKEN_DEV_FILE"] == "/run/secrets/jupyter_token_dev"
    # The secret file: 0400, owned by the container user, in a root-only directory.
    listing = ok_on_host(
        state, HOST, "sudo stat -c '%a %u %g' /etc/tfenv/secrets/dev "
        "/etc/tfenv/secrets/dev/jupyter_token_dev", timeout=30,
    ).split("\n")  # fmt: skip
    assert listing[:2] == ["700 0 0", "400 1000 1000"]


def test_second_run_changes_nothing_in_at_most_three_remote_commands(node, test_lab) -> None:
    _, host, _ = node
    again = deploy(test_lab, host, "--debug")
    assert f"[{host}] No changes" in again, again
    # The host's state (GpuHost), its containers' (TfNode), one light probe of them.
    commands = re.findall(rf"Running command on {re.escape(host)}: ", again)
    assert 1 <= len(commands) <= 3, [ln for ln in again.splitlines() if "Running command" in ln]
    assert "GPU(s) inside, light check (nothing changed on this host in this run" in again, again
    assert "TensorFlow op ok" not in again
    # Asked for: the deep checks (the TF op, a throwaway GPU container) without a change.
    deep = deploy(test_lab, host, "-v", "--data", "health=deep")
    assert "GPU(s) inside, TensorFlow op ok" in deep and "visible inside a container" in deep


def test_password_and_root_logins_are_refused(node) -> None:
    state, _, _ = node
    key = state.key  # the lab key is in the container's authorized_keys
    pub = Path(key + ".pub").read_text()
    ok_on_host(state, HOST, "cat > /tmp/dev_key && chmod 600 /tmp/dev_key", Path(key).read_text())
    ssh = (f"ssh -i /tmp/dev_key -p {DEV_SSH} -o BatchMode=yes -o StrictHostKeyChecking=no "
           "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=10")  # fmt: skip
    assert pub.split()[1] in ok_on_host(
        state, HOST, "sudo cat /etc/tfenv/containers/dev/authorized_keys"
    )
    assert ok_on_host(state, HOST, f"{ssh} researcher@127.0.0.1 id -u").strip() == "1000"
    root = on_host(state, HOST, f"{ssh} root@127.0.0.1 true")
    assert root.returncode == 255 and "Permission denied" in root.stderr
    password = on_host(
        state, HOST,
        f"ssh -p {DEV_SSH} -o BatchMode=yes -o StrictHostKeyChecking=no -o "
        "UserKnownHostsFile=/dev/null -o PreferredAuthentications=password,keyboard-interactive "
        "researcher@127.0.0.1 true",
    )  # fmt: skip
    assert password.returncode == 255
    assert "Permission denied (publickey)" in password.stderr


# The researcher's work: a file, a git repository with a stash, staged, unstaged
# and untracked changes, and a venv. Written as the user, in their home.
RESEARCH = (
    "cd ~ && echo 'notes of the day' > notes.txt && mkdir -p proj && cd proj "
    "&& git init -q && git config user.email r@lab.test && git config user.name r "
    "&& echo one > a.txt && git add a.txt && git commit -qm one "
    "&& echo stashed >> a.txt && git stash -q && echo unstaged >> a.txt "
    "&& echo staged > s.txt && git add s.txt && echo untracked > u.txt "
    "&& cd ~ && python3 -m venv --without-pip venv"
)
# Checksums first (git status may refresh its index), then git's own view.
WORK = (
    "cd ~ && find notes.txt proj venv -type f -print0 | sort -z | xargs -0 sha256sum "
    "&& git -C proj status --porcelain && git -C proj stash list"
)


def research(state) -> str:
    return ok_on_host(state, HOST, f"sudo docker exec dev sh -c {shlex.quote(WORK)}")


def test_each_change_recreates_the_container_and_names_the_field(
    node, test_lab: Lab, team_image
) -> None:
    state, host, _ = node
    ok_on_host(state, HOST, f"sudo docker exec dev sh -c {shlex.quote(RESEARCH)}")
    work = research(state)
    assert "A  s.txt" in work and "?? u.txt" in work, work
    assert " M a.txt" in work and "stash@{0}" in work and "venv/pyvenv.cfg" in work, work
    ok_on_host(state, HOST, "sudo docker exec -u 1000 dev sh -c 'echo kept > /checkpoints/step-1'")
    keyscan = f"ssh-keyscan -p {DEV_SSH} -t ed25519 127.0.0.1 2>/dev/null"
    host_key = ok_on_host(state, HOST, keyscan)
    # The new image is the team's, built by tfenv image build (images/team-dev.yaml).
    team, team_digest = team_image[0], team_image[1]
    token2 = Path(state.secrets["jupyter_token_dev"]).parent / "jupyter_token_dev_2"
    token2.write_text("second-token-value-for-the-test\n")
    token2.chmod(0o600)
    cases = [
        ("image", {"containers.dev": {"image": team}}),
        ("ports", {"containers.dev": {"ports": [{"container": 2222, "host": DEV_SSH},
                                                 {"container": 8888, "host": 8889}]}}),
        ("gpus", {"containers.dev": {"gpus": [1]}}),
        ("env: EXPERIMENT", {"containers.dev": {"env": {"EXPERIMENT": "lr-0.1"}}}),
        ("mounts", {"containers.dev": {"checkpoints": {"nfs": "checkpoints", "path": "/ckpt"}}}),
        ("secrets", {"secrets": {"jupyter_token_dev": {"file": str(token2)}}}),
    ]  # fmt: skip
    changes: dict[str, dict] = {}
    for field, change in cases:  # cumulative: each step differs from the last in one field
        for section, update in change.items():
            changes[section] = {**changes.get(section, {}), **update}
        before = container(state)["Id"]
        output = deploy(test_lab, host, changes=changes)
        assert "dev: recreating, 1 field(s) differ:" in output, (field, output)
        assert f"      {field} (declared" in output, (field, output)
        after = container(state)
        assert after["Id"] != before and after["State"]["Running"], field
        assert "GPU(s) inside, TensorFlow op ok" in output, (field, output)  # replaced: deep
        target = "/ckpt" if "checkpoints" in changes.get("containers.dev", {}) else "/checkpoints"
        kept = ok_on_host(state, HOST, f"sudo docker exec dev cat {target}/step-1")
        assert kept.strip() == "kept", field
        assert research(state) == work, field  # the home, byte for byte
        if field == "image":  # the team image serves as the dev container, health passing
            assert after["Image"] == image_id(state, team_digest), output
            health = "dev: running, healthy, sshd answers, Jupyter answers with the token only"
            assert health in output, output
        again = deploy(test_lab, host, changes=changes)
        assert f"[{host}] No changes" in again, (field, again)
    # Drift behind tfenv's back is fixed by a replacement too, the home kept.
    ok_on_host(state, HOST, "sudo docker update --restart no dev >/dev/null")
    fixed = deploy(test_lab, host, changes=changes)
    assert "      restart (declared unless-stopped, running no)" in fixed, fixed
    assert research(state) == work
    # The SSH host key stayed the same through six replacements.
    assert (
        ok_on_host(state, HOST, f"ssh-keyscan -p {DEV_SSH} -t ed25519 127.0.0.1 2>/dev/null")
        == host_key
    )
    deploy(test_lab, host)  # back to the declared state


# The researcher's repository as they left it: every file of the working tree, the
# index and the stash list (no git status: it may rewrite the index).
TREE = (
    "cd ~/proj && find . -path ./.git -prune -o -type f -print0 | sort -z | xargs -0 sha256sum "
    "&& sha256sum .git/index && git stash list && git symbolic-ref HEAD && git rev-parse HEAD"
)


def in_dev(state, script: str, container: str = "dev") -> str:
    return ok_on_host(
        state, HOST, f"sudo docker exec -u 1000 {container} sh -c {shlex.quote(script)}"
    )


def test_a_hotfix_beside_uncommitted_work_leaves_all_of_it_as_it_was(node, test_lab: Lab) -> None:
    state, host, _ = node
    if "proj" not in in_dev(state, "ls ~"):
        in_dev(state, RESEARCH)
    before = in_dev(state, TREE)
    assert "stash@{0}" in before and len(before.splitlines()) > 6, before
    production = in_dev(state, "git -C ~/proj symbolic-ref --short HEAD").strip()
    hotfix = ("hotfix", "start", host, "dev", "--ref", production, "-i", "inventories/lab.py")
    started = tfenv_cli(test_lab, *hotfix)
    said = started.stdout + started.stderr
    assert started.returncode == 0, said
    assert f"branch     hotfix/{production} (new, from {production})" in said, said
    assert "worktree   /home/researcher/hotfix/proj" in said, said
    lab1 = f"{state.registry['host']}/tfenv/tensorflow@"
    assert f"container  dev-hotfix  running {lab1}sha256:" in said, said
    sibling = json.loads(ok_on_host(state, HOST, "sudo docker inspect dev-hotfix"))[0]
    assert sibling["Config"]["Labels"]["tfenv.hotfix.of"] == "dev"
    assert sibling["Image"] == container(state)["Image"]  # the production digest, as dev's
    assert sibling["State"]["Health"]["Status"] == "healthy"
    ports = {p["HostPort"] for ps in sibling["HostConfig"]["PortBindings"].values() for p in ps}
    assert ports == {"2223", "8889"}, ports  # the next free ones above dev's 2222 and 8888
    again = tfenv_cli(test_lab, *hotfix)
    assert "(already started: nothing changed)" in again.stdout, again.stdout + again.stderr
    # The fix, committed inside the sibling, on the hotfix branch.
    in_dev(state, "cd ~/hotfix/proj && echo fixed >> a.txt && git commit -qam 'the fix'",
           container="dev-hotfix")  # fmt: skip
    in_dev(state, "echo half-done > ~/hotfix/proj/wip.txt", container="dev-hotfix")
    finish = ("hotfix", "finish", host, "dev", "-i", "inventories/lab.py")
    refused = tfenv_cli(test_lab, *finish)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "uncommitted files in the hotfix worktree" in refused.stderr
    assert "?? wip.txt" in refused.stderr and "--discard" in refused.stderr
    in_dev(state, "rm ~/hotfix/proj/wip.txt", container="dev-hotfix")
    done = tfenv_cli(test_lab, *finish)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"branch hotfix/{production} kept" in done.stdout, done.stdout
    assert in_dev(state, TREE) == before  # byte for byte: tree, index, stash, HEAD
    log = in_dev(state, f"git -C ~/proj log -1 --format=%s hotfix/{production}")
    assert log.strip() == "the fix"
    assert in_dev(state, "git -C ~/proj worktree list | wc -l").strip() == "1"
    assert in_dev(state, "ls ~/hotfix 2>/dev/null | wc -l").strip() == "0"
    gone = on_host(state, HOST, "sudo docker inspect dev-hotfix")
    assert gone.returncode != 0
    nothing = tfenv_cli(test_lab, *finish)
    assert f"No hotfix of dev on {host}: nothing to do." in nothing.stdout


def image_id(state, digest: str) -> str:
    return ok_on_host(
        state, HOST, f"sudo docker image inspect -f '{{{{.Id}}}}' "
        f"{state.registry['host']}/team/tf-dev@{digest}", timeout=60,
    ).strip()  # fmt: skip


def test_failed_pull_leaves_the_old_container_running(node, test_lab: Lab) -> None:
    state, host, _ = node
    before = container(state)
    broken = f"{state.registry['host']}/tfenv/tensorflow:2.17.1-lab3-broken"
    registry = f"{test_lab.name}-registry"
    subprocess.run(["docker", "stop", registry], check=True, capture_output=True)
    try:
        output = deploy(
            test_lab, host, changes={"containers.dev": {"image": broken}}, succeed=False
        )
    finally:
        subprocess.run(["docker", "start", registry], check=True, capture_output=True)
    assert f"tfenv: could not pull {state.registry['host']}/tfenv/tensorflow@sha256:" in output
    after = container(state)
    assert after["Id"] == before["Id"] and after["State"]["Running"]


def find_leaks(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """Every (where, which secret) pair where a value shows up."""
    return [
        f"{which} in {where}"
        for where, text in texts.items()
        for which, value in secrets.items()
        if value and value in text
    ]


def _watch_processes(state, stop: threading.Event, seen: list[str]) -> None:
    while not stop.is_set():
        result = on_host(
            state, HOST, "ps -eo args= ; sudo docker exec dev ps -eo args= 2>/dev/null"
        )
        seen.append(result.stdout)


def test_no_secret_value_leaks_at_any_verbosity(node, test_lab: Lab) -> None:
    state, host, _ = node
    secrets = secret_values(state)
    texts: dict[str, str] = {}
    # A fresh token so that secrets are written during the watched runs.
    token3 = Path(state.secrets["jupyter_token_dev"]).parent / "jupyter_token_dev_3"
    token3.write_text("third-token-value-for-the-leak-test\n")
    token3.chmod(0o600)
    secrets["new jupyter token"] = "third-token-value-for-the-leak-test"
    changes = {"secrets": {"jupyter_token_dev": {"file": str(token3)}}}
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=_watch_processes, args=(state, stop, seen))
    watcher.start()
    try:
        for flags in (["-vvv"], ["--debug"], ["--diff"], ["--json"]):
            texts[" ".join(flags)] = deploy(test_lab, host, *flags, changes=changes)
        texts["--debug, first after a change"] = deploy(test_lab, host, "--debug", "-vvv")
    finally:
        stop.set()
        watcher.join()
    texts["process lists"] = "\n".join(seen)
    texts["docker inspect"] = json.dumps(container(state))
    texts["docker logs"] = ok_on_host(state, HOST, "sudo docker logs dev 2>&1")
    assert len(seen) > 3  # the watcher really sampled during the runs
    assert find_leaks(texts, secrets) == []
    # And the scan does catch a value that leaks on purpose.
    leaky = deploy(test_lab, host, "-v", changes=changes) + "\n" + leak_on_purpose(test_lab, host)
    assert find_leaks({"leaky run": leaky}, secrets) == ["jupyter token in leaky run"]
    deploy(test_lab, host)


def leak_on_purpose(lab: Lab, host: str) -> str:
    return pyinfra_on_lab(lab, "-vvv", "--limit", host, "tests/lab_deploys/leak_on_purpose.py")


def test_the_dev_container_runs_with_least_privilege(node, test_lab: Lab) -> None:
    state, _, _ = node
    info = container(state)
    assert info["Config"]["User"] == "1000:1000"
    assert info["HostConfig"]["CapDrop"] == ["ALL"] and not info["HostConfig"]["CapAdd"]
    assert info["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
    top = ok_on_host(state, HOST, "sudo docker top dev -eo uid,pid,args").splitlines()
    assert len(top) >= 4, top  # tini, the entrypoint, sshd, Jupyter
    assert all(line.split()[0] == "1000" for line in top[1:]), top
    # Jupyter: on the lab host's loopback only, so through an SSH tunnel...
    bindings = info["HostConfig"]["PortBindings"]
    assert bindings["8888/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8888"}]
    token = Path(state.secrets["jupyter_token_dev"]).read_text().strip()
    lab_host = state.hosts[HOST]
    local = 18000 + HOST
    tunnel = subprocess.Popen(
        [*ssh_command(state.key, state.known_hosts, lab_host.port, state.user)[:-1],
         "-N", "-L", f"127.0.0.1:{local}:127.0.0.1:8888", f"{state.user}@127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        status = _http_status(f"http://127.0.0.1:{local}/api/status", token, tries=30)
        assert status == 200
        assert _http_status(f"http://127.0.0.1:{local}/api/status", None) == 403
    finally:
        tunnel.terminate()
        tunnel.wait()
    # ...and not from outside the lab host (its address on the lab network).
    address = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         lab_host.container], capture_output=True, text=True, check=True,
    ).stdout.split()[0]  # fmt: skip
    with pytest.raises(OSError):
        socket.create_connection((address, 8888), timeout=5).close()
    socket.create_connection((address, DEV_SSH), timeout=5).close()  # SSH is published


def _http_status(url: str, token: str | None, tries: int = 1) -> int:
    headers = {"Authorization": f"token {token}"} if token else {}
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5):
                return 200
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            if attempt == tries - 1:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


# -- a container in use --------------------------------------------------------


def _change(number: int, **replace) -> dict:
    """A one-field change (a new EXPERIMENT value), with a replace policy."""
    update: dict = {"env": {"EXPERIMENT": f"busy-{number}"}}
    if replace:
        update["replace"] = replace
    return {"containers.dev": update}


def open_session(state, host: int = HOST) -> None:
    """A researcher's SSH session into dev, from the lab host (its output: /tmp/session.out)."""
    ok_on_host(
        state, host, "cat > /tmp/dev_key && chmod 600 /tmp/dev_key", Path(state.key).read_text()
    )
    ok_on_host(state, host, "rm -f /tmp/session.out; " + SESSION)
    opened = on_host(state, host, "pgrep -f '[s]sh -tt -i /tmp/dev_key'")
    assert opened.returncode == 0, on_host(state, host, "cat /tmp/session.out").stdout


def test_an_ssh_session_holds_off_a_replacement_until_it_closes(node, test_lab: Lab) -> None:
    state, host, _ = node
    open_session(state)
    before = container(state)["Id"]
    try:
        held = deploy(test_lab, host, changes=_change(1), succeed=False)
    finally:
        ok_on_host(state, HOST, CLOSE_SESSION)
    assert "dev: NOT replaced, it is in use: an SSH session from " in held, held
    assert "Error: replacement pending for container(s) in use: dev (an SSH session" in held
    assert "--data force_busy=true" in held
    assert container(state)["Id"] == before  # untouched
    output = deploy(test_lab, host, changes=_change(1))  # the session closed: replaced now
    assert "dev: recreating, 1 field(s) differ:" in output
    assert container(state)["Id"] != before


def test_wait_replaces_once_the_session_closes(node, test_lab: Lab) -> None:
    state, host, _ = node
    open_session(state)
    before = container(state)["Id"]
    closer = threading.Timer(20, ok_on_host, (state, HOST, CLOSE_SESSION))
    closer.start()
    try:
        output = deploy(test_lab, host, changes=_change(2, policy="wait", timeout=240))
    finally:
        closer.join()
    assert "waiting up to 240 s for it to be idle" in output, output
    assert container(state)["Id"] != before


def test_now_tells_the_session_then_replaces(node, test_lab: Lab) -> None:
    state, host, _ = node
    open_session(state)
    before = container(state)["Id"]
    try:
        output = deploy(test_lab, host, changes=_change(3, policy="now"))
    finally:
        ok_on_host(state, HOST, CLOSE_SESSION)
    assert "its users' terminals get a notice first" in output, output
    assert container(state)["Id"] != before
    seen = ok_on_host(state, HOST, "cat /tmp/session.out")
    assert "*** tfenv: this container (dev) is replaced in 10 seconds by a deploy." in seen, seen


def test_a_busy_jupyter_kernel_holds_off_a_replacement(node, test_lab: Lab) -> None:
    state, host, _ = node
    script = (REPO_TESTS / "lab_files" / "jupyter_kernel.py").read_text()
    kernel = ok_on_host(state, HOST, "sudo docker exec -i dev python3 - start 900", script).strip()
    before = container(state)["Id"]
    held = deploy(test_lab, host, changes=_change(4), succeed=False)
    assert f"Jupyter kernel {kernel[:8]} is busy" in held, held
    assert container(state)["Id"] == before
    ok_on_host(state, HOST, f"sudo docker exec -i dev python3 - stop {kernel}", script)
    deploy(test_lab, host, changes=_change(4))
    assert container(state)["Id"] != before


def test_a_gpu_process_holds_off_a_replacement(node, test_lab: Lab) -> None:
    state, host, _ = node
    # SIMULATED: the lab's nvidia-smi lists processes marked with this variable.
    start = ("sudo docker exec -d -e NVIDIA_SIM_GPU_PROCESS=0 dev "
             "python3 -c 'import time; time.sleep({})'")  # fmt: skip
    ok_on_host(state, HOST, start.format(900) + "; sleep 1")
    before = container(state)["Id"]
    try:
        held = deploy(test_lab, host, changes=_change(5), succeed=False)
    finally:
        ok_on_host(state, HOST, "sudo docker exec dev pkill -f 'time[.]sleep[(]900'; true")
    assert "GPU process " in held and "(python3, 1542 MiB)" in held, held
    assert container(state)["Id"] == before
    # wait: a GPU job that ends within the timeout is waited for.
    ok_on_host(state, HOST, start.format(20) + "; sleep 1")
    output = deploy(test_lab, host, changes=_change(5, policy="wait", timeout=240))
    assert "waiting up to 240 s" in output and "GPU process " in output, output
    assert container(state)["Id"] != before
    deploy(test_lab, host)  # back to the declared state


ON_NFS = {"containers.dev": {"workspace": {"nfs": "checkpoints"}}}


def test_a_workspace_on_nfs_is_never_written_to_the_local_disk(node, test_lab: Lab) -> None:
    state, host, _ = node
    nfs = f"{test_lab.name}-nfs"
    ok_on_host(state, HOST, "sudo docker exec dev sh -c 'echo local > ~/local-marker'")
    before = container(state)["Id"]
    subprocess.run(["docker", "stop", nfs], check=True, capture_output=True)
    ok_on_host(state, HOST, "sudo systemctl stop mnt-checkpoints.mount")
    try:
        down = deploy(test_lab, host, changes=ON_NFS, succeed=False)
        # Nothing of the home reached the unmounted mount point on the local disk.
        ok_on_host(state, HOST, "! mountpoint -q /mnt/checkpoints && "
                                "sudo test ! -e /mnt/checkpoints/.tfenv-homes")  # fmt: skip
    finally:
        subprocess.run(["docker", "start", nfs], check=True, capture_output=True)
    assert "tfenv: could not mount nfs.lab.test:/export/checkpoints on /mnt/checkpoints" in down
    assert "nothing meant for the export is written to the local disk" in down, down
    assert container(state)["Id"] == before
    # With the export back, the home moves to it (the local one is left as it was).
    up = deploy(test_lab, host, changes=ON_NFS)
    assert "      mounts (declared" in up, up
    home = ok_on_host(state, HOST, "sudo docker exec dev sh -c 'echo on-nfs > ~/where; ls -a ~'")
    assert "where" in home and ".bashrc" in home  # a new home gets the image's skeleton
    assert "on-nfs" in ok_on_host(state, HOST, "sudo cat /mnt/checkpoints/.tfenv-homes/dev/where")
    local = ok_on_host(state, HOST, "sudo cat /var/lib/tfenv/containers/dev/home/local-marker")
    assert local.strip() == "local"  # the local home is left as it was
    deploy(test_lab, host)  # back to the declared state


def test_a_read_only_root_filesystem_still_serves_ssh_and_jupyter(node, test_lab: Lab) -> None:
    state, host, _ = node
    output = deploy(test_lab, host, "-v", changes={"containers.dev": {"read_only": True}})
    assert "      read_only (declared True, running False)" in output, output
    assert "dev: running, healthy, sshd answers, Jupyter answers with the token only" in output
    refused = on_host(state, HOST, "sudo docker exec dev touch /usr/local/tfenv-was-here")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    ok_on_host(state, HOST, "sudo docker exec dev sh -c 'touch /tmp/scratch ~/still-writable'")
    deploy(test_lab, host)  # back to the declared state


def test_docker_down_is_never_read_as_no_containers(node, test_lab: Lab) -> None:
    state, host, _ = node
    before = container(state)["Id"]
    ok_on_host(state, HOST, "sudo systemctl stop docker docker.socket")
    # One run: the engine operation starts Docker, the container state is read
    # again, and the existing container is kept (no "name already in use").
    output = deploy(test_lab, host, "-v")
    assert "noop: dev runs as declared" in output, output
    after = container(state)
    assert after["Id"] == before and after["State"]["Running"]


def test_an_interrupted_replacement_is_repaired_by_the_next_run(node, test_lab: Lab) -> None:
    state, host, _ = node
    before = container(state)["Id"]
    ok_on_host(state, HOST, "sudo docker exec dev sh -c 'echo safe > ~/interrupted'")
    # What `kill -9` of pyinfra right after the rename of a replacement leaves:
    # the old container stopped under its temporary name, no new one yet.
    ok_on_host(state, HOST, "sudo docker stop -t 5 dev >/dev/null && "
                            "sudo docker rename dev dev.tfenv-previous")  # fmt: skip
    output = deploy(test_lab, host, "-v")
    assert "dev: an interrupted replacement left it renamed: restoring it first" in output
    after = container(state)
    assert after["Id"] == before and after["State"]["Running"]
    kept = ok_on_host(state, HOST, "sudo docker exec dev sh -c 'cat ~/interrupted'")
    assert kept.strip() == "safe"
    assert "dev.tfenv-previous" not in ok_on_host(state, HOST, "sudo docker ps -a")


def test_an_nfs_export_down_at_boot_starts_nothing_on_the_local_disk(node, test_lab: Lab) -> None:
    state, host, _ = node
    ok_on_host(state, HOST, "sudo docker exec dev sh -c 'echo boot > /checkpoints/boot-marker'")
    nfs = f"{test_lab.name}-nfs"
    subprocess.run(["docker", "stop", nfs], check=True, capture_output=True)
    try:
        pyinfra_on_lab(test_lab, "--limit", host, "server.reboot", "reboot_timeout=120")
        # Docker came up without the export: the container's bind source (a
        # directory only the export has) is missing, so it does not start...
        states = ok_on_host(state, HOST, "sudo docker ps -a --format '{{.Names}} {{.State}}'")
        assert "dev running" not in states, states
        # ...and nothing was written to the empty local mount point.
        ok_on_host(state, HOST, "! mountpoint -q /mnt/checkpoints && "
                                "[ -z \"$(sudo ls -A /mnt/checkpoints)\" ]")  # fmt: skip
    finally:
        subprocess.run(["docker", "start", nfs], check=True, capture_output=True)
    output = deploy(test_lab, host, "-v")  # the export back: one run mounts and starts it
    assert "dev: running, healthy" in output, output
    assert ok_on_host(state, HOST, "sudo docker exec dev cat /checkpoints/boot-marker").strip() == (
        "boot"
    )


# -- faults (the README's fault table) ------------------------------------------


def _wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


def _home_file(state, host: int, name: str) -> str:
    return ok_on_host(state, host, f"sudo docker exec dev sh -c 'cat ~/{name}'").strip()


def _start_pyinfra(lab: Lab, *args: str, changes: dict, log: Path) -> subprocess.Popen:
    """pyinfra as :func:`pyinfra_on_lab` runs it (its output to ``log``), in the
    background, in its own process group (to be killed with -9 as a whole)."""
    env = {**os.environ, "TFENV_LAB_DIR": str(lab.directory), "PYTHONPATH": str(REPO_TESTS.parent),
           "TFENV_TEST_CHANGES": json.dumps(changes)}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", *args,
         "tests/lab_deploys/tf_node_with.py"],
        cwd=REPO_TESTS.parent, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


NOTICE = "is replaced in 10 seconds by a deploy"


def test_kill_9_of_pyinfra_mid_replacement_loses_nothing(
    node, test_lab: Lab, tmp_path: Path
) -> None:
    state, host, _ = node
    ok_on_host(state, HOST, "sudo docker exec dev sh -c 'echo kept > ~/killed'")
    open_session(state)
    before = container(state)["Id"]
    run = _start_pyinfra(test_lab, "--limit", host, changes=_change(10, policy="now"),
                         log=tmp_path / "killed.log")  # fmt: skip
    try:
        # The replacement is under way once the session's terminal got the notice.
        _wait_until(lambda: NOTICE in on_host(state, HOST, "cat /tmp/session.out").stdout,
                    300, "the replacement's notice")  # fmt: skip
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        ok_on_host(state, HOST, CLOSE_SESSION)
    # At once, as an operator would: the host still runs what the killed run
    # began; this run waits for it (the container's lock), then converges.
    output = deploy(test_lab, host, "-v", changes=_change(10, policy="wait", timeout=120))
    assert "dev: running, healthy" in output, output
    after = container(state)
    assert after["Id"] != before and after["State"]["Running"]
    assert "EXPERIMENT=busy-10" in after["Config"]["Env"]
    assert _home_file(state, HOST, "killed") == "kept"
    names = ok_on_host(state, HOST, "sudo docker ps -a --format '{{.Names}}'")
    assert "tfenv-previous" not in names, names
    again = deploy(test_lab, host, "-v", changes=_change(10))
    assert "noop: dev runs as declared" in again, again


def test_dockerd_restarted_mid_run_still_converges_in_one_run(node, test_lab: Lab) -> None:
    state, host, _ = node
    ok_on_host(state, HOST, "sudo docker exec dev sh -c 'echo kept > ~/dockerd'")
    before = container(state)["Id"]
    # After every fact was read, dockerd goes down, and comes back 8 s later
    # (to the 100 ms: a systemd timer's default accuracy is a minute, and CI once
    # saw it fire 60 s late, past the product's wait for Docker).
    os.environ["TFENV_TEST_FAULT"] = (
        "systemctl stop docker docker.socket && systemd-run --on-active=8 "
        "--timer-property=AccuracySec=100ms systemctl start docker"
    )
    try:
        output = deploy(test_lab, host, "-v", changes=_change(11), succeed=None)
    finally:
        os.environ.pop("TFENV_TEST_FAULT")
    # On failure, what systemd did with Docker (a start that failed or hung).
    said = on_host(
        state,
        HOST,
        "sudo systemctl status docker docker.socket --no-pager; "
        "sudo journalctl -u docker -u docker.socket --since -5min --no-pager | tail -n 60",
    )
    assert "Error:" not in output, output + said.stdout
    assert "dev: recreating, 1 field(s) differ:" in output, output
    assert "dev: running, healthy" in output, output
    after = container(state)
    assert after["Id"] != before and after["State"]["Running"]
    assert _home_file(state, HOST, "dockerd") == "kept"


def test_a_full_disk_during_a_pull_leaves_the_old_container_running(node, test_lab: Lab) -> None:
    state, host, _ = node
    before = container(state)["Id"]
    # The broken release: never pulled on this host (its registry was down then).
    image = f"{state.registry['host']}/tfenv/tensorflow:2.17.1-lab3-broken"
    digest = yaml.safe_load(Path(state.lock).read_text())["images"][image]["digest"]
    present = ok_on_host(state, HOST, "sudo docker image ls --digests --format '{{.Digest}}'")
    assert digest not in present  # so the deploy must pull it
    # SIMULATED full disk: Docker writes what it downloads under
    # /var/lib/docker/tmp; a full tmpfs there fails the pull with ENOSPC. Mounted
    # through `docker exec` (the lab machine's own namespace, which dockerd
    # shares; an SSH session on a lab host has a mount namespace of its own).
    machine = ["docker", "exec", state.hosts[HOST].container, "sh", "-c"]
    full = ("mount -t tmpfs -o size=64k tfenv-lab-full /var/lib/docker/tmp && "
            "(dd if=/dev/zero of=/var/lib/docker/tmp/fill bs=4k 2>/dev/null; true)")  # fmt: skip
    subprocess.run([*machine, full], check=True, capture_output=True)
    try:
        output = deploy(test_lab, host, changes={"containers.dev": {"image": image}}, succeed=False)
    finally:
        subprocess.run([*machine, "umount /var/lib/docker/tmp"], check=True, capture_output=True)
    assert "no space left on device" in output, output
    assert "the host's disk is full (no space left on device). Free space" in output, output
    after = container(state)
    assert after["Id"] == before and after["State"]["Running"]


SKEWED_DATE = """#!/bin/sh
# tfenv lab: SIMULATED clock 1 day ahead (the test removes this file)
exec /bin/date -d "@$(( $(/bin/date +%s) + 86400 ))" "$@"
"""


def test_a_clock_a_day_off_stops_that_host_before_any_change(node, test_lab: Lab) -> None:
    state, host, _ = node
    before = container(state)["Id"]
    ok_on_host(state, HOST, "sudo tee /usr/local/bin/date >/dev/null && "
                            "sudo chmod 755 /usr/local/bin/date", SKEWED_DATE)  # fmt: skip
    try:
        output = deploy(test_lab, host, changes=_change(12), succeed=False)
    finally:
        ok_on_host(state, HOST, "sudo rm -f /usr/local/bin/date")
    assert "its clock is 1 day ahead of this machine's (+86" in output, output
    assert "Fix its time sync" in output
    assert container(state)["Id"] == before  # nothing changed
    output = deploy(test_lab, host, changes=_change(12))  # clock fixed: it goes on
    assert container(state)["Id"] != before


@pytest.fixture(scope="module")
def second(node, lab_of):
    """A second lab host (lab-6, bare) for the faults where the other hosts go on:
    (the lab's state with it, its name)."""
    state = lab_of(HOST + 2, images=True)
    return state, state.hosts[HOST + 1].name


def test_a_changed_host_key_stops_that_host_and_the_others_go_on(
    node, second, test_lab: Lab, tmp_path: Path
) -> None:
    state, host, _ = node
    grown, other = second
    known = Path(state.known_hosts)
    saved = known.read_text()
    port = grown.hosts[HOST + 1].port
    # A real key, not the host's: what a reinstalled host (or an impostor) shows.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)  # fmt: skip
    stranger = " ".join((tmp_path / "k.pub").read_text().split()[:2])
    lines = [line for line in saved.splitlines() if not line.startswith(f"[127.0.0.1]:{port} ")]
    known.write_text("\n".join([*lines, f"[127.0.0.1]:{port} {stranger}"]) + "\n")
    try:
        output = pyinfra_on_lab(test_lab, "--limit", host, "--limit", other, "deploys/tf_node.py",
                                succeed=False, timeout=900)  # fmt: skip
    finally:
        known.write_text(saved)
    assert f"[{other}] SSH host key error" in output, output
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in output
    assert f"[{host}] Connected" in output
    assert "dev: running, healthy" in output  # the other host went on to the end


def test_a_host_down_mid_run_fails_alone_and_converges_when_back(
    node, second, test_lab: Lab, tmp_path: Path
) -> None:
    state, host, _ = node
    _, other = second  # bare: this run takes it all the way to a working dev container
    ok_on_host(state, HOST, "sudo docker exec dev sh -c 'echo kept > ~/host-down'")
    open_session(state)
    log = tmp_path / "host-down.log"
    run = _start_pyinfra(test_lab, "--limit", host, "--limit", other,
                         changes=_change(13, policy="now"), log=log)  # fmt: skip
    machine = state.hosts[HOST].container
    try:
        # In the middle of its replacement (its users got the notice), the host goes away.
        _wait_until(lambda: NOTICE in on_host(state, HOST, "cat /tmp/session.out").stdout,
                    600, "the replacement's notice")  # fmt: skip
        subprocess.run(["docker", "stop", "-t", "0", machine], check=True, capture_output=True)
        assert run.wait(timeout=900) != 0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        subprocess.run(["docker", "start", machine], check=True, capture_output=True)
    output = one_space_after_host(log.read_text())
    assert f"[{host}] Error: lost the SSH connection during" in output, output
    assert "the other hosts go on" in output
    assert f"[{other}] dev: running, healthy" in output, output  # the other went on to the end
    # Back up (a reboot, as far as it can tell): one run converges, the home kept.
    _wait_until(lambda: on_host(state, HOST, "true", timeout=10).returncode == 0, 120, "SSH")
    output = deploy(test_lab, host, "-v", changes=_change(13))
    assert "dev: running, healthy" in output, output
    assert "EXPERIMENT=busy-13" in container(state)["Config"]["Env"]
    assert _home_file(state, HOST, "host-down") == "kept"
