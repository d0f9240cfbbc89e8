"""Every runnable block of every runbook, run against the lab, in the README's order.

The runbooks' variables are set for the test lab: the fleet ``$INV`` is lab-5
alone, in the lab's group (so group_data/lab.py applies) with the lab's lock,
and ``$HOST`` is lab-5 (provisioned
by test_lab_tf_node.py's first deploy, or here when this module runs alone),
``$SSH`` reaches it over real SSH with strict host keys, ``$CONSOLE`` is
``docker exec`` into its lab container (a host's console), ``$SPEC`` is the
session's team image spec. Before some runbooks the situation they are for is
made real: drift before the drift report, the NFS mount stopped before the
NFS outage. Blocks run with ``bash -euo pipefail`` from the repository, as an
operator pastes them.

Image: lab-5's dev container from test_lab_tf_node.py (real TensorFlow) and the
session's team image: the runbooks act on what researchers run.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from lab_fixtures import TF_NODE_HOST, canary_inventory, ok_on_host
from runbook_blocks import REPO, blocks, listed

from tfenv.lab.fleet import Lab, ssh_command

pytestmark = pytest.mark.lab

# What makes each runbook's situation real on lab-5 before its blocks run.
SITUATIONS = {
    "drift-report.md": "sudo docker update --restart no dev >/dev/null",
    "nfs-outage.md": "sudo systemctl stop mnt-checkpoints.mount",
}
RESEARCH = (
    "cd ~ && mkdir -p proj && cd proj && git init -q && git config user.email r@lab.test "
    "&& git config user.name r && echo one > a.txt && git add a.txt && git commit -qm one "
    "&& echo unstaged >> a.txt"
)


@pytest.fixture(scope="module")
def variables(tf_node_host, team_image, test_lab: Lab, tmp_path_factory) -> dict[str, str]:
    state, host, _ = tf_node_host
    lab_host = state.hosts[TF_NODE_HOST]
    tmp = tmp_path_factory.mktemp("runbooks")
    repo = "sudo docker exec -u 1000 dev sh -c "
    if "proj" not in ok_on_host(state, TF_NODE_HOST, repo + shlex.quote("ls ~")):
        ok_on_host(state, TF_NODE_HOST, repo + shlex.quote(RESEARCH))
    ref = ok_on_host(state, TF_NODE_HOST, repo + "'git -C ~/proj symbolic-ref --short HEAD'")
    ssh = ssh_command(state.key, state.known_hosts, lab_host.port, state.user)
    # The runbooks' fleet: lab-5 alone (the lab's other hosts are other tests' business).
    inventory = tmp / "fleet.py"
    inventory.write_text(canary_inventory("the runbooks", Path(state.lock), [host]))
    return {
        "INV": str(inventory),
        "HOST": host,
        "CONTAINER": "dev",
        "SSH": shlex.join(ssh),
        "CONSOLE": f"docker exec {lab_host.container}",
        "ADDRESS": "127.0.0.1",
        "PORT": str(lab_host.port),
        "KNOWN_HOSTS": state.known_hosts,
        "SPEC": str(team_image[3]),
        "TOKEN_FILE": state.secrets["jupyter_token_dev"],
        "REF": ref.strip(),
        "ARCHIVE": str(tmp / "archive"),
        "MOUNT": "/mnt/checkpoints",
        "TFENV_LAB_DIR": str(test_lab.directory),
        "TFENV_STATE_DIR": str(tmp / "state"),
    }


@pytest.mark.parametrize("runbook", [name for name in listed() if any(
    b.kind == "runnable" for b in blocks(name))])  # fmt: skip
def test_the_runbook_works_on_the_lab(runbook: str, variables, tf_node_host) -> None:
    state = tf_node_host[0]
    if runbook in SITUATIONS:
        ok_on_host(state, TF_NODE_HOST, SITUATIONS[runbook], timeout=120)
    env = {
        **os.environ, **variables, "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    for block in blocks(runbook):
        if block.kind != "runnable":
            continue
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code], cwd=REPO, env=env,
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        said = f"{block.where} (exit {result.returncode}):\n{block.code}\n{result.stdout[-3000:]}"
        assert result.returncode in block.exits, said + result.stderr[-3000:]
