"""After a deploy: does each container really work? One command per host for all
of them (a ``docker exec`` each).

Inside each container a small Python program checks sshd's banner, Jupyter
with its token (read from the secret file, so it never reaches a command
line) and without it (refused), and the GPUs ``nvidia-smi -L`` lists. The
deep check adds a real TensorFlow op: after anything changed on the host in
this run, or when asked (``--data health=deep``, ``tfenv reconcile --deep``);
see :mod:`tfenv.operations.run_state`. Outside, Docker's own state and health.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import FactBase, QuoteString, StringCommand, operation

from tfenv.containers.docker_up import wait_for_docker
from tfenv.operations.failure import fail_host
from tfenv.operations.run_state import deep_checks

PROBE = r"""
import json, os, socket, subprocess, sys, time, urllib.error, urllib.request
out = {}
deep = sys.argv[1:] == ["deep"]
def retry(check, seconds=90):
    deadline = time.time() + seconds
    while True:
        try:
            return check()
        except Exception as exc:
            if time.time() > deadline:
                return f"error: {type(exc).__name__}: {exc}"[:200]
            time.sleep(1)
def sshd():
    port = int(os.environ.get("TFENV_SSH_PORT", "22"))
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        banner = s.recv(64)
    if not banner.startswith(b"SSH-2.0"):
        raise ValueError("no SSH banner")
    return "ok"
out["sshd"] = retry(sshd)
token_file = os.environ.get("JUPYTER_TOKEN_FILE")
if token_file:
    url = f"http://127.0.0.1:{os.environ.get('JUPYTER_PORT', '8888')}/api/status"
    def jupyter():
        with open(token_file) as f:
            token = f.read().strip()
        request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        urllib.request.urlopen(request, timeout=5).read()
        try:
            urllib.request.urlopen(url, timeout=5)
            return "answers WITHOUT the token"
        except urllib.error.HTTPError as exc:
            return "ok" if exc.code in (401, 403) else f"without the token: HTTP {exc.code}"
    out["jupyter"] = retry(jupyter)
try:
    smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    out["gpus"] = sum(line.startswith("GPU ") for line in smi.stdout.splitlines())
except (OSError, subprocess.SubprocessError):
    out["gpus"] = 0
if deep:
    tf = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; "
         "print(float(tf.reduce_sum(tf.matmul([[1.0, 2.0]], [[3.0], [4.0]]))))"],
        capture_output=True, text=True, timeout=300,
    )
    lines = (tf.stdout.strip() or tf.stderr.strip() or "no output").splitlines()
    out["tensorflow"] = "ok" if tf.returncode == 0 and lines[-1] == "11.0" else lines[-1][:200]
print("TFENV-PROBE " + json.dumps(out))
"""


class ContainerHealth(FactBase):
    """Docker's state and health of each of ``containers`` (waiting while one is
    starting), then the in-container probe's results: name -> result, in one command."""

    def command(self, containers: list[str], deep: bool = False) -> StringCommand:
        fmt = "'{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}'"
        parts: list = [wait_for_docker(fail=False), ";"]  # dockerd restarting: they come back
        for container in containers:
            ref = QuoteString(container)
            parts += [
                "for i in $(seq 180); do", "s=$(docker inspect --format", fmt, ref, "2>&1);",
                'case "$s" in *starting*) sleep 0.5;; *) break;; esac; done;',
                "echo", QuoteString(f"TFENV-CONTAINER {container}"), ";",
                'echo "TFENV-STATE $s";', "docker", "exec", ref, "python3", "-c",
                QuoteString(PROBE), *(["deep"] if deep else []), "2>&1", "|", "tail", "-n", "5;",
            ]  # fmt: skip
        return StringCommand(*parts)

    def process(self, output: list[str]) -> dict[str, dict]:
        results: dict[str, dict] = {}
        current: dict = {}
        for line in output:
            if line.startswith("TFENV-CONTAINER "):
                current = {"state": "", "probe": None, "output": []}
                results[line[len("TFENV-CONTAINER ") :].strip()] = current
            elif not current:
                continue
            elif line.startswith("TFENV-STATE "):
                current["state"] = line[len("TFENV-STATE ") :].strip()
            elif line.startswith("TFENV-PROBE "):
                current["probe"] = json.loads(line[len("TFENV-PROBE ") :])
            else:
                current["output"] = [*current["output"], line][-3:]
        return results


def problems(result: dict, gpus: int | None, jupyter: bool, deep: bool = True) -> list[str]:
    """What is wrong with one container, from :class:`ContainerHealth`'s result."""
    found = []
    state = result["state"].split()
    if state[:1] != ["running"]:
        found.append(f"not running (docker says: {result['state'] or 'nothing'})")
    elif len(state) > 1 and state[1] != "healthy":
        found.append(f"Docker health is {state[1]}")
    probe = result["probe"]
    if probe is None:
        said = " / ".join(result["output"]) or "no output"
        return [*found, f"the in-container probe did not run ({said[:300]})"]
    if probe.get("sshd") != "ok":
        found.append(f"sshd: {probe.get('sshd')}")
    if jupyter and probe.get("jupyter") != "ok":
        found.append(f"Jupyter: {probe.get('jupyter')}")
    if gpus is not None and probe.get("gpus") != gpus:
        found.append(f"{probe.get('gpus')} GPU(s) visible inside, {gpus} declared")
    if deep and probe.get("tensorflow") != "ok":
        found.append(f"a TensorFlow op failed: {probe.get('tensorflow')}")
    return found


@dataclass(frozen=True)
class HealthCheck:
    """What one container must show: ``gpus`` visible inside (``None``: not
    checked), and Jupyter answering with its token only when ``jupyter``."""

    container: str
    gpus: int | None = None
    jupyter: bool = False


@operation()
def containers_health(checks: list[HealthCheck], deep: bool | None = None):
    """
    Fail the host unless each container runs, is healthy, and its services answer.

    + checks: one :class:`HealthCheck` per container
    + deep: also run a TensorFlow op in each; ``None``: when anything changed on this
      host in this run, or ``--data health=deep`` / ``tfenv reconcile --deep`` asks

    Checked when the deploy runs (one command for all the containers), never while
    planning; changes nothing.

    **Example:**

    .. code:: python

        containers_health(name="Health", checks=[HealthCheck("dev", gpus=8, jupyter=True)])
    """
    if not host.state.is_executing:
        host.noop("checked when the deploy runs")
        return
    if not checks:
        host.noop("no container")
        return
    why = ""
    if deep is None:
        deep, why = deep_checks(host)
    results = host.get_fact(ContainerHealth, containers=[c.container for c in checks], deep=deep)
    failed = []
    for check in checks:
        name = check.container
        result = results.get(name, {"state": "", "probe": None, "output": ["no answer"]})
        found = problems(result, check.gpus, check.jupyter, deep)
        if found:
            failed.append(f"container {name}: {'; '.join(found)}. See: docker logs {name}")
            continue
        parts = [f"{name}: running, healthy", "sshd answers"]
        if check.jupyter:
            parts.append("Jupyter answers with the token only")
        parts.append(f"{result['probe']['gpus']} GPU(s) inside")
        parts.append("TensorFlow op ok" if deep else f"light check ({why})")
        host.log_styled(", ".join(parts), fg="green", log_func=logger.info)
    if failed:
        yield fail_host(" / ".join(failed))
        return
    host.noop(f"{len(checks)} container(s) healthy" + ("" if deep else " (light check)"))


@operation()
def node_summary(lines: list[str]):
    """
    Say, once every check before it passed, what the host now runs (one line per host).

    + lines: what to say (driver, GPUs, containers and their images)

    **Example:**

    .. code:: python

        node_summary(name="Summary", lines=["driver 550.127.05", "dev: registry/tf:2.17"])
    """
    if host.state.is_executing:
        host.log_styled(f"TF node ready: {'; '.join(lines)}", fg="green", log_func=logger.info)
    host.noop("summary")
    yield from ()  # an operation is a generator, even one that changes nothing
