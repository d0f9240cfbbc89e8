"""deploys/tf_node.py on a real lab host, end to end, over real SSH.

One host (the lab's 5th, fresh) goes from bare to a running dev container;
then each declared change recreates exactly that container and names the
field; checkpoints survive; a failed pull leaves the old container running;
no secret value shows up anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from lab_fixtures import ok_on_host, on_host, pyinfra_on_lab

from tfenv.lab.fleet import Lab

pytestmark = pytest.mark.lab

HOST = 4  # 0-based: lab-5
DEV_SSH = 2222


def deploy(lab: Lab, host: str, *flags: str, changes: dict | None = None, succeed: bool = True):
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
def node(lab_of, test_lab: Lab):
    """lab-5 after a first tf_node run (the expensive part, shared by the tests below)."""
    state = lab_of(HOST + 1, images=True)
    host = state.hosts[HOST].name
    first = deploy(test_lab, host, "-v")
    return state, host, first


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


def test_second_run_changes_nothing(node, test_lab: Lab) -> None:
    _, host, _ = node
    again = deploy(test_lab, host)
    assert f"[{host}] No changes" in again, again


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


def test_each_change_recreates_the_container_and_names_the_field(node, test_lab: Lab) -> None:
    state, host, _ = node
    ok_on_host(state, HOST, "sudo docker exec -u 1000 dev sh -c 'echo kept > /checkpoints/step-1'")
    keyscan = f"ssh-keyscan -p {DEV_SSH} -t ed25519 127.0.0.1 2>/dev/null"
    host_key = ok_on_host(state, HOST, keyscan)
    lab2 = f"{state.registry['host']}/tfenv/tensorflow:2.17.1-lab2"
    token2 = Path(state.secrets["jupyter_token_dev"]).parent / "jupyter_token_dev_2"
    token2.write_text("second-token-value-for-the-test\n")
    token2.chmod(0o600)
    cases = [
        ("image", {"containers.dev": {"image": lab2}}),
        ("ports", {"containers.dev": {"ports": [{"container": 22, "host": DEV_SSH},
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
        target = "/ckpt" if "checkpoints" in changes.get("containers.dev", {}) else "/checkpoints"
        kept = ok_on_host(state, HOST, f"sudo docker exec dev cat {target}/step-1")
        assert kept.strip() == "kept", field
        again = deploy(test_lab, host, changes=changes)
        assert f"[{host}] No changes" in again, (field, again)
    # The SSH host key stayed the same through six replacements.
    assert (
        ok_on_host(state, HOST, f"ssh-keyscan -p {DEV_SSH} -t ed25519 127.0.0.1 2>/dev/null")
        == host_key
    )
    deploy(test_lab, host)  # back to the declared state


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
