"""pytest fixtures for tests that need real lab hosts.

One lab per test session (named ``tfenv-test-lab`` or ``$TFENV_TEST_LAB_NAME``, its
own state directory ``/var/tmp/tfenv-test-lab`` or ``$TFENV_TEST_LAB_DIR``, so a
developer's own ``tfenv lab`` is untouched), grown to the largest size any test asks
for, and taken down at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from time_table import lab_setup

from tfenv.lab.engine import docker_ready, ensure_docker
from tfenv.lab.fleet import Lab, LabState, down, ssh_command, up, wait_for_ssh
from tfenv.lab.run import LabError

REPO = Path(__file__).resolve().parent.parent
TEST_LAB_NAME = os.environ.get("TFENV_TEST_LAB_NAME", "tfenv-test-lab")
TEST_LAB_DIR = Path(os.environ.get("TFENV_TEST_LAB_DIR", "/var/tmp/tfenv-test-lab"))


def lab_available() -> str | None:
    """Why lab tests cannot run here, or None. CI must be able to run them."""
    if os.environ.get("CI"):
        return None  # in CI a missing engine is a failure, not a skip
    if docker_ready():
        return None
    if shutil.which("dockerd") and os.geteuid() == 0:
        return None
    return "no Docker engine (run .ci/run or: apt-get install docker.io)"


@pytest.fixture(scope="session")
def test_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    why = lab_available()
    if why:
        pytest.skip(why)
    ensure_docker()
    # A fixed directory: keys and the registry's blobs survive between runs, so
    # a second run does not push the TF images again.
    lab = Lab(name=TEST_LAB_NAME, directory=TEST_LAB_DIR)
    yield lab
    with lab_setup("lab down"):
        down(lab)


@pytest.fixture(scope="session")
def lab_of(test_lab: Lab):
    """``lab_of(n, images=False)`` -> LabState with at least n hosts up and, with
    ``images``, the lab TF images pushed and locked (reused across tests)."""
    current: dict[str, LabState] = {}

    def bring_up(hosts: int, images: bool = False) -> LabState:
        have = current.get("state")
        if have is not None and len(have.hosts) >= hosts and (have.lock or not images):
            return have
        hosts = max(hosts, len(have.hosts) if have else 0)
        try:
            with lab_setup("lab up"):
                current["state"] = up(test_lab, hosts, images=images or bool(have and have.lock))
        except LabError as exc:
            pytest.fail(f"lab up failed: {exc}")
        return current["state"]

    return bring_up


def pyinfra_on_lab(lab: Lab, *args: str, timeout: float = 300, succeed: bool | None = True) -> str:
    """``pyinfra -y inventories/lab.py ARGS`` from the repository, as a user runs it;
    fails the test unless it succeeds (or, with ``succeed=False``, unless it fails;
    ``None``: the caller looks at the output). Returns its whole output."""
    env = {**os.environ, "TFENV_LAB_DIR": str(lab.directory), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if succeed is not None:
        assert (result.returncode == 0) == succeed, result.stdout + result.stderr
    return one_space_after_host(result.stdout + result.stderr)


def one_space_after_host(output: str) -> str:
    """pyinfra pads ``[NAME]`` to the inventory's longest host name (``[lab-5]  Success``
    once there is a ``lab-10``): one space, so tests can look for ``[lab-5] Success``."""
    return re.sub(r"(\[[A-Za-z0-9_.-]+\]) {2,}", r"\1 ", output)


def on_host(
    state: LabState, host: int, script: str, stdin: str | bytes | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``script`` over SSH on lab host number ``host`` (0-based), strict host keys."""
    argv = ssh_command(state.key, state.known_hosts, state.hosts[host].port, state.user)
    return subprocess.run(
        [*argv, script],
        input=stdin,
        capture_output=True,
        text=not isinstance(stdin, bytes),
        timeout=timeout,
        check=False,
    )


def ok_on_host(
    state: LabState, host: int, script: str, stdin: str | bytes | None = None, timeout: float = 600
) -> str:
    """:func:`on_host`, failing the test unless ``script`` succeeds; its stdout."""
    result = on_host(state, host, script, stdin, timeout)
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def start_host_again(lab: Lab, state: LabState, host: int, timeout: float = 300) -> None:
    """``docker start`` a lab host a test stopped, then wait until it answers over SSH
    and its ``dev`` container is running and healthy again (a test that goes on at
    once sees a host still booting: unreachable, or its engine not up yet)."""
    subprocess.run(["docker", "start", state.hosts[host].container], check=True,
                   capture_output=True)  # fmt: skip
    wait_for_ssh(lab, state.hosts[host], timeout=timeout)
    deadline = time.monotonic() + timeout
    probe = "sudo docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' dev 2>/dev/null"
    while "running healthy" not in on_host(state, host, probe, timeout=60).stdout:
        assert time.monotonic() < deadline, f"dev not healthy again on {state.hosts[host].name}"
        time.sleep(2)


CANARY_INVENTORY = '''\
"""Lab hosts for {what}, {canary} the canary (written by the test)."""
import runpy

from tfenv.lab.fleet import current_state

_state = current_state()
# {reboots!r} hosts may reboot at once (the lab's driver as group_data/lab.py declares it).
# The lab's group data, read only when something of it is overridden below.
_declared = runpy.run_path({group_data!r}) if {reboots!r} > 1 or {probe!r} else {{}}
_driver = {{}}
if {reboots!r} > 1:
    _reboots = {{"reboot_max_parallel": {reboots!r}}}
    _driver = {{"nvidia_driver": {{**_declared["nvidia_driver"], **_reboots}}}}
# A canary probe of the test's own ({probe!r}; empty: tfenv's, real TensorFlow).
_containers = {{}}
if {probe!r}:
    _dev = _declared["containers"]["dev"]
    _canary = {{**_dev["canary"], "probe": {probe!r}}}
    _containers = {{"containers": {{"dev": {{**_dev, "canary": _canary}}}}}}
lab = [
    (name, {{**_state.ssh_data(name), "image_lock": {lock!r}, **_driver, **_containers}})
    for name in {names!r}
]
canary = [{canary!r}]
'''


def canary_inventory(
    what: str, lock: Path, names: list[str], reboots: int = 1, probe: tuple[str, ...] = ()
) -> str:
    """An inventory of ``names`` (group ``lab``, so the lab's group data applies), with
    its own image lock and the first host as the ``canary`` group. ``reboots`` > 1: that
    many hosts may reboot at once (a first deploy of fresh hosts: the default is one).
    ``probe``: the dev container's canary probe (argv; see :data:`SCRIPTED_PROBE`)."""
    return CANARY_INVENTORY.format(what=what, lock=str(lock), names=names, canary=names[0],
                                   reboots=reboots, probe=list(probe),
                                   group_data=str(REPO / "group_data" / "lab.py"))  # fmt: skip


# The lab's SCRIPTED canary readings (tfenv/lab/files/lab-scripted-probe.py): fixed
# metrics by lab release, so a rollout test's gates decide the same on every run.
SCRIPTED_PROBE = ("python3", "/checkpoints/tfenv-canary/lab-scripted-probe.py")


def install_scripted_probe(lab: Lab) -> None:
    """Put the scripted probe where every lab dev container sees it (the NFS export of
    its checkpoints, as its ``/checkpoints``), readable by the container's user."""
    target = lab.directory / "nfs" / "exports" / "checkpoints" / "dev" / "tfenv-canary"
    target.mkdir(parents=True, exist_ok=True)
    probe = target / "lab-scripted-probe.py"
    shutil.copyfile(REPO / "tfenv" / "lab" / "files" / "lab-scripted-probe.py", probe)
    probe.chmod(0o644)


def tfenv_cli(lab: Lab, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``tfenv ARGS`` from the repository against the test lab, as a user runs it."""
    env = {**os.environ, "TFENV_LAB_DIR": str(lab.directory), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", "from tfenv.cli import main; main()", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def team_spec(tmp: Path, version: str, **changes: object) -> Path:
    """images/team-dev.yaml with another version (each test run pushes a tag of its
    own: the registry outlives the run), its own requirements file, and ``changes``."""
    import yaml

    spec = yaml.safe_load((REPO / "images/team-dev.yaml").read_text())
    spec.update(version=version, pip_requirements=str(tmp / f"{version}.requirements.txt"))
    spec.update(changes)
    path = tmp / f"team-{version}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def team_image(lab_of, test_lab: Lab, tmp_path_factory: pytest.TempPathFactory):
    """images/team-dev.yaml built by ``tfenv image build`` into the test lab's registry
    and lock (once per session): (name:tag, digest, the build's output)."""
    state = lab_of(1, images=True)
    tmp = tmp_path_factory.mktemp("team-image")
    version = f"v0.{int(time.time())}"
    spec = team_spec(tmp, version)
    deps = tfenv_cli(test_lab, "image", "lock-deps", str(spec))
    assert deps.returncode == 0, deps.stdout + deps.stderr
    built = tfenv_cli(test_lab, "image", "build", str(spec))
    assert built.returncode == 0, built.stdout + built.stderr
    reference = f"{state.registry['host']}/team/tf-dev:{version}-tf2.17.1"
    digest = re.search(r"digest\s+(sha256:[0-9a-f]{64})", built.stdout)
    assert digest, built.stdout
    return reference, digest[1], built.stdout + built.stderr, spec


# A researcher's SSH session into the host's dev container, from the lab host (its
# output: /tmp/session.out; the key at /tmp/dev_key): the command returns once the
# session's command runs in the container (no fixed wait). CLOSE_SESSION ends it
# and returns once it is gone.
_IN_DEV = "sudo docker top dev 2>/dev/null | grep -q '[s]leep 900'"
SESSION = (
    "setsid nohup ssh -tt -i /tmp/dev_key -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no "
    "-o UserKnownHostsFile=/dev/null researcher@127.0.0.1 'sleep 900' >/tmp/session.out 2>&1 "
    f"</dev/null & for i in $(seq 200); do {_IN_DEV} && break; sleep 0.1; done"
)
# [s]sh: the pattern must not match this pkill's own command line (its SSH session)
CLOSE_SESSION = (
    "pkill -f '[s]sh -tt -i /tmp/dev_key'; "
    f"for i in $(seq 100); do {_IN_DEV} || break; sleep 0.1; done; true"
)


TF_NODE_HOST = 4  # 0-based: lab-5, the host of test_lab_tf_node.py and the runbooks


@pytest.fixture(scope="session")
def tf_node_host(lab_of, test_lab: Lab):
    """lab-5 after a first ``deploys/tf_node.py`` run: (state, host name, its output)."""
    state = lab_of(TF_NODE_HOST + 1, images=True)
    host = state.hosts[TF_NODE_HOST].name
    first = pyinfra_on_lab(test_lab, "-v", "--limit", host, "deploys/tf_node.py", timeout=900)
    return state, host, first
