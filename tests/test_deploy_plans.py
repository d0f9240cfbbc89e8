"""The deploys (``tfenv/deploys/``) in pyinfra's own test style: facts in, exact
operations and commands out, in-process (no SSH, no Docker).

A real pyinfra ``State`` holds one host whose ``get_fact`` answers from the
test (:class:`Facts`); the deploy runs as pyinfra's planning phase runs it, then
each planned operation's command generator runs again, as ``tfenv reconcile``
does (:func:`tfenv.reconcile.collect.operation_items`), to read back its
commands or its no-op reason. :meth:`Run.execute` goes on as pyinfra's
execution phase would (one host, operations in order, each marked done with
the commands it gave), for what is decided only then: the reboot, the checks.

Whole plans are golden files (``tests/fixtures/deploy_plans/``, reviewed; after
a deliberate change: ``TFENV_UPDATE_SNAPSHOT=1 pytest tests/test_deploy_plans.py``,
then review the diff). The other tests pin one decision each.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyinfra.api import Config, FileUploadCommand, FunctionCommand, Inventory, State, StringCommand
from pyinfra.api.exceptions import DeployError
from pyinfra.context import ctx_host, ctx_state
from test_container_drift import made_by

from tfenv.containers.desired import desired_container, mounted_secrets
from tfenv.deploys import gpu_base as gb
from tfenv.deploys import spec as deploy_spec
from tfenv.deploys import tf_node as tn
from tfenv.deploys.reconcile_timer import reconcile_timer_for_host, timer_spec
from tfenv.facts.gpu import GpuHost, GpuHostState, GpuInContainer, Package
from tfenv.facts.tf_node import ObservedContainer, SealedFile, TfNode, TfNodeState
from tfenv.layout import HOTFIX_OF_LABEL, secret_path
from tfenv.model.load import load
from tfenv.model.secrets import SecretValue
from tfenv.operations import tf_container as tc
from tfenv.operations.container_health import ContainerHealth
from tfenv.reconcile.env import DEEP_ENV, OUT_ENV

HOST = "gpu1"
FIXTURES = Path(__file__).parent / "fixtures" / "deploy_plans"
FACTS = Path(__file__).parent / "facts"
UPDATE = os.environ.get("TFENV_UPDATE_SNAPSHOT") == "1"

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3JzbiBzaG91bGQgYmUgYSByZWFsIGtleQ== t@test"
KEY2 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g alice@laptop"
)
DIGEST_A, DIGEST_B, DIGEST_C = ("sha256:" + c * 64 for c in "abc")
TF_A = "registry.test:5000/ml/tf:2.17.0"
TF_B = "registry.test:5000/ml/tf:2.18.0"
CHECK_IMAGE = "registry.test:5000/ml/debian:bookworm"
PINNED_A = f"registry.test:5000/ml/tf@{DIGEST_A}"
PINNED_B = f"registry.test:5000/ml/tf@{DIGEST_B}"
PINNED_CHECK = f"registry.test:5000/ml/debian@{DIGEST_C}"
LOCK_TEXT = f"""version: 1
images:
  {TF_A}:
    digest: {DIGEST_A}
  {TF_B}:
    digest: {DIGEST_B}
  {CHECK_IMAGE}:
    digest: {DIGEST_C}
"""
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBdeploy-plans-test-ca\n-----END CERTIFICATE-----\n"
TOKEN = "jupyter-token-Q7v"
REG_PASSWORD = "registry-password-K2d"

# A host as a fleet declares it: every part of the deploy has something to do.
# dev-a: Jupyter, checkpoints on NFS; dev-b: its home on NFS, replaced when idle
# waits; the third NFS mount is used by no container (the deploy leaves it out).
DATA: dict[str, Any] = {
    "gpu_count": 4,
    "nvidia_driver": {"branch": "550", "version": "550.127.05", "reboot_max_parallel": 3},
    "docker_engine": {"version": "27.3.1"},
    "container_toolkit": {"version": "1.17.3"},
    "apt_repositories": {
        "cuda": {"url": "https://mirror.test/cuda/debian12/x86_64/", "key": "https://mirror.test/cuda.pub"},
    },
    "image_lock": "images.lock.yaml",
    "gpu_check_image": CHECK_IMAGE,
    "registries": {
        "registry.test:5000": {"username": "robot", "password_secret": "reg_pw",
                               "ca_file": "ca.pem"},
    },
    "secrets": {"reg_pw": {"file": "secrets/reg_pw"}, "token": {"file": "secrets/token"}},
    "nfs_mounts": {
        "ckpt": {"server": "nfs.test", "export": "/export/ckpt", "mount_point": "/mnt/ckpt"},
        "homes": {"server": "nfs.test", "export": "/export/homes", "mount_point": "/mnt/homes"},
        "scratch": {"server": "nfs.test", "export": "/export/scratch",
                    "mount_point": "/mnt/scratch"},
    },
    "containers": {
        "dev-a": {
            "image": TF_A,
            "user": {"name": "alice", "uid": 2001, "gid": 2001},
            "authorized_keys": [KEY + "  ", KEY2],  # stray blanks: the deploy strips each key
            "ports": [{"container": 2222, "host": 2201}, {"container": 8888, "host": 8801}],
            "gpus": [0, 1],
            "jupyter": {"token_secret": "token"},
            "checkpoints": {"nfs": "ckpt"},
        },
        "dev-b": {
            "image": TF_B,
            "user": {"name": "bob", "uid": 2002, "gid": 2002},
            "ports": [{"container": 2222, "host": 2202}],
            "gpus": [2, 3],
            "workspace": {"nfs": "homes"},
            "replace": {"policy": "wait", "timeout": 120},
        },
    },
}  # fmt: skip


# -- the harness -------------------------------------------------------------------


# What the driver step plans while dev-a has an SSH session (the plain deploy and a
# driver rollout's move say the same).
BUSY_REFUSAL = [
    {"call": "report_failure", "args": [
        "driver 550.144.03: nothing changed and the host NOT rebooted: container(s) in use "
        "(replace: when-idle): dev-a (an SSH session from 192.168.0.1:53518). The driver "
        "change is pending (kernel module 550.127.05 loaded, 550.144.03 declared). Run the "
        "deploy again once they are idle, or now with --data force_busy=true (users get a "
        "notice on their terminals)."]}
]  # fmt: skip


def render(command: object) -> Any:
    """A command as a plan shows it: the shell line, the upload (where, what), or the
    function pyinfra would call (with its arguments)."""
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    if isinstance(command, FileUploadCommand):
        command.src.seek(0)
        text = command.src.read()
        return {"upload": command.dest, "text": text.decode() if isinstance(text, bytes) else text}
    if isinstance(command, FunctionCommand):
        name = command.function.__name__
        return {"call": name, "args": list(command.args)} if command.args else {"call": name}
    raise AssertionError(f"unexpected command {command!r}")


Answer = Any  # a fact's value, or a function of the fact's arguments giving it


class Facts:
    """``host.get_fact`` for the test: answers by fact class, every read recorded (with
    its arguments). A read outside pyinfra's context for this host fails, as a
    real fact read from a bare greenlet would."""

    def __init__(self, answers: dict[type, Answer]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.host: Any = None

    def __call__(self, fact: type, *args: object, **arguments: Any) -> Any:
        assert not args, "facts are read with keyword arguments"
        assert ctx_host.get() is self.host and ctx_state.get() is self.host.state, (
            f"{fact.__name__} read outside the host's pyinfra context"
        )
        self.asked.append((fact.__name__, arguments))
        if fact not in self.answers:
            raise AssertionError(f"unexpected fact read: {fact.__name__} {arguments}")
        answer = self.answers[fact]
        return answer(**arguments) if callable(answer) else answer

    def reads(self, fact: type) -> list[dict[str, Any]]:
        return [arguments for name, arguments in self.asked if name == fact.__name__]


class Reads:
    """A fact whose answer changes as the run changes the host: the n-th read gets the
    n-th answer, later reads the last."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.count = 0

    def __call__(self, **_: Any) -> Any:
        self.count += 1
        return self.answers[min(self.count, len(self.answers)) - 1]


@dataclasses.dataclass
class Step:
    name: str
    commands: list[Any]
    noops: list[str]

    @property
    def noop(self) -> str:
        return "; ".join(self.noops)

    def as_plan(self) -> dict[str, Any]:
        if self.commands:
            return {"op": self.name, "commands": self.commands}
        return {"op": self.name, "noop": self.noop}


class Run:
    """One pyinfra run on the host ``HOST`` (real State and Host; facts from the test)."""

    def __init__(self, data: dict[str, Any], facts: Facts, others: tuple[str, ...] = ()) -> None:
        hosts = [(HOST, data), *((name, {"nvidia_driver": {"reboot_max_parallel": 2}})
                                 for name in others)]  # fmt: skip
        inventory = Inventory((hosts, {}))
        self.state = State(inventory, Config())
        self.host = inventory.get_host(HOST)
        self.facts = facts
        facts.host = self.host
        self.host.get_fact = facts  # type: ignore[method-assign]
        self._noops: dict[str | None, list[str]] = {}
        self.host.noop = self._noop  # type: ignore[method-assign]
        self.said: list[str] = []
        self.host.log_styled = lambda text, **_: self.said.append(text)  # type: ignore

    def _noop(self, description: str) -> None:
        self._noops.setdefault(self.host.current_op_hash, []).append(description)

    def __call__(self, function: Callable[..., Any], *args: Any) -> Run:
        with ctx_state.use(self.state), ctx_host.use(self.host):
            function(*args)
        return self

    def _replay(self, op_hash: str, data: Any) -> Step:
        self._noops.clear()
        commands = [render(c) for c in data.command_generator()]
        name = " / ".join(sorted(self.state.op_meta[op_hash].names))
        return Step(name, commands, self._noops.get(op_hash, []))

    def plan(self) -> list[Step]:
        """Each planned operation: what it would run, or why it runs nothing."""
        with ctx_state.use(self.state), ctx_host.use(self.host):
            return [self._replay(h, d) for h, d in self.state.ops[self.host].items()]

    def execute(self) -> list[Step]:
        """The operations run in order, each done (with its commands) before the next."""
        self.state.is_executing = True
        steps = []
        with ctx_state.use(self.state), ctx_host.use(self.host):
            for op_hash, data in self.state.ops[self.host].items():
                step = self._replay(op_hash, data)
                data.operation_meta.set_complete(True, step.commands, None)
                steps.append(step)
        return steps

    def meta_arguments(self, name_end: str) -> dict[str, Any]:
        """The arguments pyinfra keeps per operation for all hosts (``_parallel``, ...)."""
        for meta in self.state.op_meta.values():
            if any(name.endswith(name_end) for name in meta.names):
                return dict(meta.global_arguments)
        raise AssertionError(f"no operation named ...{name_end}")


def names(steps: list[Step]) -> list[str]:
    return [step.name for step in steps]


def step(steps: list[Step], name_part: str) -> Step:
    found = [s for s in steps if name_part in s.name]
    assert len(found) == 1, (name_part, names(steps))
    return found[0]


class _Dumper(yaml.SafeDumper):
    """Multi-line text (uploaded files) as YAML blocks: the golden files read as the files."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text and not text.endswith((" ", "\n\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text)


def dump(value: object) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def check_golden(name: str, steps: list[Step]) -> None:
    """``steps`` against the reviewed plan ``name`` (rewritten with TFENV_UPDATE_SNAPSHOT=1)."""
    path = FIXTURES / f"{name}.yaml"
    plan = [s.as_plan() for s in steps]
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(plan))
    assert plan == yaml.safe_load(path.read_text())


def fact_fixture(fact: str, name: str) -> dict[str, Any]:
    return yaml.safe_load((FACTS / fact / f"{name}.yaml").read_text())["fact"]


def forget_the_run() -> None:
    """The container operation's per-run module state: each test is one run."""
    tc._said.clear()
    tc.PENDING.clear()


@pytest.fixture(autouse=True)
def one_run_each() -> Iterator[None]:
    forget_the_run()
    yield
    forget_the_run()


def prepare_workdir(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``path`` as the project directory of the run (its cwd, as pyinfra's): the lock,
    the CA and the secret files; no reconcile environment."""
    (path / "images.lock.yaml").write_text(LOCK_TEXT)
    (path / "ca.pem").write_text(CA_PEM)
    secrets = path / "secrets"
    secrets.mkdir()
    for name, value in (("reg_pw", REG_PASSWORD), ("token", TOKEN)):
        (secrets / name).write_text(value + "\n")
        os.chmod(secrets / name, 0o600)
    monkeypatch.chdir(path)
    monkeypatch.delenv(OUT_ENV, raising=False)
    monkeypatch.delenv(DEEP_ENV, raising=False)
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return prepare_workdir(tmp_path, monkeypatch)


def spec_of(workdir: Path, data: dict[str, Any] | None = None) -> Any:
    return load(HOST, copy.deepcopy(data or DATA), workdir)


# -- tf_node_deploy: whole plans ------------------------------------------------------


def bare_facts() -> Facts:
    """A fresh Debian 12 host (captured): no Docker, no driver, nothing of tfenv's."""
    gpu = GpuHostState.from_json({**fact_fixture("gpu.GpuHost", "debian12_bare"), "clock_skew": 0})
    node = TfNodeState.from_json(fact_fixture("tf_node.TfNode", "bare"))
    return Facts({GpuHost: gpu, TfNode: node})


def test_a_fresh_host_plans_everything_in_order(workdir: Path) -> None:
    facts = bare_facts()
    run = Run(DATA, facts)(tn.tf_node_deploy, spec_of(workdir))
    check_golden("fresh_host", run.plan())


PINNED = {TF_A: PINNED_A, TF_B: PINNED_B}
SSH_SESSION = "ssh 0100A8C0:D10E"  # as tfenv_busy prints it: a peer at 192.168.0.1


def fixture_fact(name: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())


def as_declared(spec: Any, name: str, sealed: dict[str, SealedFile]) -> ObservedContainer:
    """Container ``name`` as ``docker run`` made it from the declared data (the inspect
    oracle), its secrets' seals read from the host, running, healthy and idle."""
    container = spec.containers[name]
    seals = {s: sealed[secret_path(name, s)].seal for s in mounted_secrets(container)}
    desired = desired_container(name, container, PINNED[container.image], spec.nfs_mounts,
                                seals, spec.publish_address)  # fmt: skip
    return dataclasses.replace(made_by(desired), health="healthy", busy_checked=True)


def converged_gpu() -> GpuHostState:
    return GpuHostState.from_json(fixture_fact("converged.gpu_host"))


def converged_node(spec: Any, **changes: Any) -> TfNodeState:
    """The host's TfNode fact after the deploy of ``spec``: everything as declared."""
    node = TfNodeState.from_json(fixture_fact("converged.tf_node"))
    node.containers = {name: as_declared(spec, name, node.sealed) for name in spec.containers}
    for name, fields in changes.items():
        node.containers[name] = dataclasses.replace(node.containers[name], **fields)
    return node


def converged_facts(spec: Any, **changes: Any) -> Facts:
    return Facts({GpuHost: converged_gpu(), TfNode: converged_node(spec, **changes)})


def changed(steps: list[Step]) -> list[str]:
    """The names of the operations that would run commands."""
    return [s.name for s in steps if s.commands]


def test_a_fresh_host_reads_each_wide_fact_once(workdir: Path) -> None:
    facts = bare_facts()
    Run(DATA, facts)(tn.tf_node_deploy, spec_of(workdir))
    # Both planning reads at once (read_both); gpu_base reuses them.
    assert sorted(facts.asked, key=lambda a: a[0]) == [("GpuHost", {}), ("TfNode", {})]


def test_a_converged_host_plans_only_noops(workdir: Path) -> None:
    spec = spec_of(workdir)
    steps = Run(DATA, converged_facts(spec))(tn.tf_node_deploy, spec).plan()
    assert changed(steps) == []
    check_golden("converged_host", steps)


def gpus_listed(count: int) -> dict[str, Any]:
    """GpuInContainer's answer: ``nvidia-smi -L`` in a throwaway container."""
    return {
        "rc": 0,
        "lines": [f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})" for i in range(count)],
    }


def healthy(gpus: dict[str, int]) -> Callable[..., dict[str, Any]]:
    """ContainerHealth's answer: each container running, healthy, its probe all ok."""

    def answer(containers: list[str], deep: bool) -> dict[str, Any]:
        return {
            name: {"state": "running healthy", "output": [],
                   "probe": {"sshd": "ok", "jupyter": "ok", "gpus": gpus[name],
                             "tensorflow": "ok" if deep else None}}
            for name in containers
        }  # fmt: skip

    return answer


def test_a_fresh_host_executed_reboots_once_then_creates_the_containers(workdir: Path) -> None:
    bare = bare_facts().answers
    installed = GpuHostState.from_json(
        {**fact_fixture("gpu.GpuHost", "debian12_installed_not_loaded"), "clock_skew": 0}
    )
    gpu = Reads(bare[GpuHost], installed, converged_gpu())
    docker_up = TfNodeState(docker="ok")
    facts = Facts({
        GpuHost: gpu, TfNode: Reads(bare[TfNode], docker_up),
        GpuInContainer: gpus_listed(4), ContainerHealth: healthy({"dev-a": 2, "dev-b": 2}),
    })  # fmt: skip
    run = Run(DATA, facts)(tn.tf_node_deploy, spec_of(workdir))
    planned = {s.name: s for s in run.plan()}
    executed = run.execute()
    # The package operations run as planned; what is decided only when the deploy runs
    # (the reboot, the checks, containers Docker could not show while planning) differs.
    check_golden("fresh_host_executed", [s for s in executed if s != planned[s.name]])
    # Read again once after the packages changed, and once after the reboot; not per check.
    assert gpu.count == 3
    assert facts.reads(GpuInContainer) == [{"image": PINNED_CHECK}]
    assert facts.reads(ContainerHealth) == [{"containers": ["dev-a", "dev-b"], "deep": True}]


def test_a_changed_declared_field_recreates_exactly_that_container(workdir: Path) -> None:
    data = copy.deepcopy(DATA)
    data["containers"]["dev-a"]["env"] = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    spec = spec_of(workdir)
    steps = Run(data, converged_facts(spec))(tn.tf_node_deploy, spec_of(workdir, data)).plan()
    assert changed(steps) == ["TF node | Container dev-a (registry.test:5000/ml/tf:2.17.0)"]
    check_golden("dev_a_env_changed", [s for s in steps if s.commands])


def test_ports_are_published_on_the_hosts_declared_address(workdir: Path) -> None:
    data = {**copy.deepcopy(DATA), "publish_address": "192.0.2.10"}
    spec = spec_of(workdir, data)
    facts = converged_facts(spec)
    del facts.answers[TfNode].containers["dev-b"]
    steps = Run(data, facts)(tn.tf_node_deploy, spec).plan()
    # dev-a, made on that address, runs as declared; dev-b is created on it.
    assert changed(steps) == ["TF node | Container dev-b (registry.test:5000/ml/tf:2.18.0)"]
    assert " --publish 192.0.2.10:2202:2222/tcp " in step(steps, "Container dev-b").commands[-1]


def test_a_busy_container_is_not_replaced_and_fails_the_run_at_its_end(workdir: Path) -> None:
    data = copy.deepcopy(DATA)
    data["containers"]["dev-a"]["env"] = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    spec = spec_of(workdir)
    facts = converged_facts(spec, **{"dev-a": {"busy": [SSH_SESSION]}})
    facts.answers[ContainerHealth] = healthy({"dev-a": 2, "dev-b": 2})
    steps = Run(data, facts)(tn.tf_node_deploy, spec_of(workdir, data)).execute()
    assert step(steps, "Container dev-a").noop == "dev-a is in use: replacement pending"
    assert step(steps, "Pending replacements").commands == [
        {"call": "report_failure", "args": [
            "replacement pending for container(s) in use: dev-a (an SSH session from "
            "192.168.0.1:53518). They run on unchanged; run the deploy again once they are "
            "idle, or replace them now with --data force_busy=true (users get a notice on "
            "their terminals)."]}
    ]  # fmt: skip


def test_force_busy_replaces_a_busy_container_after_a_notice(workdir: Path) -> None:
    data = {**copy.deepcopy(DATA), "force_busy": "true"}
    data["containers"]["dev-a"]["env"] = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    spec = spec_of(workdir)
    facts = converged_facts(spec, **{"dev-a": {"busy": [SSH_SESSION]}})
    steps = Run(data, facts)(tn.tf_node_deploy, spec_of(workdir, data)).plan()
    replace = step(steps, "Container dev-a").commands[-1]
    assert "this container (dev-a) is replaced in" in replace and "came into use" not in replace
    assert step(steps, "Pending replacements").noop == "no replacement pending"


def test_a_changed_secret_rewrites_its_file_and_recreates_its_container(workdir: Path) -> None:
    spec = spec_of(workdir)
    facts = converged_facts(spec)
    (workdir / "secrets" / "token").write_text("a-new-token\n")
    steps = Run(DATA, facts)(tn.tf_node_deploy, spec).plan()
    assert changed(steps) == [
        "TF node | Secret files and authorized keys of dev-a",
        "TF node | Container dev-a (registry.test:5000/ml/tf:2.17.0)",
    ]
    files = step(steps, "Secret files and authorized keys of dev-a").commands
    assert {"upload": "/etc/tfenv/secrets/dev-a/token.tfenv-new", "text": "a-new-token"} in files
    # The container carries its secrets' seals: the new value recreates it.
    assert (
        "--label tfenv.secrets="
        in step(steps, "Container dev-a (registry.test:5000/ml/tf:2.17.0)").commands[-1]
    )
    assert "tfenv.secrets=720d06380b41720ec1aad0b8d499c35f" not in str(steps)


def test_changed_authorized_keys_are_rewritten_without_touching_the_container(
    workdir: Path,
) -> None:
    data = copy.deepcopy(DATA)
    data["containers"]["dev-a"]["authorized_keys"] = [KEY2, KEY]
    spec = spec_of(workdir, data)
    steps = Run(data, converged_facts(spec))(tn.tf_node_deploy, spec).plan()
    assert changed(steps) == ["TF node | Secret files and authorized keys of dev-a"]
    upload = step(steps, "Secret files and authorized keys of dev-a").commands[3]
    assert upload == {"upload": "/etc/tfenv/containers/dev-a/authorized_keys.tfenv-new",
                      "text": f"{KEY2}\n{KEY}\n"}  # fmt: skip


def tfenv_container(name: str, status: str = "running", **labels: str) -> ObservedContainer:
    """A container carrying tfenv's label that the data may not declare."""
    return ObservedContainer(name=name, id=name, image_id="sha256:9", running=status == "running",
                             status=status, health=None, labels={"tfenv.managed": "true", **labels},
                             busy_checked=True)  # fmt: skip


def others_on_the_host(spec: Any) -> Facts:
    """The converged host, plus what tfenv finds there but the data does not declare:
    a hotfix sibling of dev-a, one of a container since removed from the data, an
    old container, the leftover of dev-b's interrupted replacement; dev-b unhealthy."""
    facts = converged_facts(spec, **{"dev-b": {"health": "unhealthy"}})
    node = facts.answers[TfNode]
    for extra in (
        tfenv_container("dev-a-hotfix", **{HOTFIX_OF_LABEL: "dev-a"}),
        tfenv_container("gone-hotfix", **{HOTFIX_OF_LABEL: "gone"}),
        tfenv_container("old", status="exited"),
        dataclasses.replace(node.containers["dev-b"], name="dev-b.tfenv-previous"),
    ):
        node.containers[extra.name] = extra
    return facts


def test_undeclared_containers_are_left_alone_with_a_warning_and_hotfixes_named(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = spec_of(workdir)
    with caplog.at_level("INFO", logger="pyinfra"):
        steps = Run(DATA, others_on_the_host(spec))(tn.tf_node_deploy, spec).plan()
    # Only the leftover of the interrupted replacement is tfenv's to remove.
    assert changed(steps) == ["TF node | Container dev-b (registry.test:5000/ml/tf:2.18.0)"]
    assert step(steps, "Container dev-b (registry.test:5000/ml/tf:2.18.0)").commands == [
        "docker rm -f dev-b.tfenv-previous >/dev/null"
    ]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if HOST in r.getMessage()]
    assert said == [
        ("INFO", "gpu1: dev-a-hotfix is a hotfix of dev-a (tfenv hotfix finish gpu1 dev-a "
                 "removes it)"),
        ("WARNING", "gpu1: container gone-hotfix carries tfenv's label but is not declared; "
                    "tfenv leaves it alone (remove it with: docker rm -f gone-hotfix)"),
        ("WARNING", "gpu1: container old carries tfenv's label but is not declared; tfenv leaves "
                    "it alone (remove it with: docker rm -f old)"),
    ]  # fmt: skip


def reconcile_line(run: Run, out: Path) -> dict[str, Any]:
    """The one line the run wrote for tfenv reconcile (items without their history)."""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 1
    for item in lines[0].get("items", []):
        assert item.pop("first_seen") is None  # the history fills it in, not the run
    return lines[0]


def test_reconcile_reports_what_no_operation_changes(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = workdir / "out.jsonl"
    monkeypatch.setenv(OUT_ENV, str(out))
    spec = spec_of(workdir)
    facts = others_on_the_host(spec)
    run = Run(DATA, facts)(tn.tf_node_deploy, spec)
    # reconcile's check execs nothing inside containers (no --deep).
    assert facts.reads(TfNode) == [{"exec_probes": False}]
    assert reconcile_line(run, out) == {
        "host": HOST,
        "items": [
            {"area": "containers", "field": "dev-b.tfenv-previous.exists", "declared": "absent",
             "observed": "left by a replacement", "action": "apply", "command": ""},
            {"area": "undeclared", "field": "gone-hotfix", "declared": "absent (not declared)",
             "observed": "running", "action": "person",
             "command": "docker rm -f gone-hotfix  (after saving what its user needs)"},
            {"area": "undeclared", "field": "old", "declared": "absent (not declared)",
             "observed": "exited", "action": "person",
             "command": "docker rm -f old  (after saving what its user needs)"},
            {"area": "containers", "field": "dev-b.health", "declared": "healthy",
             "observed": "unhealthy", "action": "person", "command": "docker logs --tail 50 dev-b"},
        ],
    }  # fmt: skip


def test_reconcile_deep_may_exec_inside_containers(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = workdir / "out.jsonl"
    monkeypatch.setenv(OUT_ENV, str(out))
    monkeypatch.setenv(DEEP_ENV, "1")
    spec = spec_of(workdir)
    facts = converged_facts(spec)
    run = Run(DATA, facts)(tn.tf_node_deploy, spec)
    assert facts.reads(TfNode) == [{}]
    assert reconcile_line(run, out) == {"host": HOST, "items": []}


class Unreachable(Exception):
    pass


def test_a_fact_that_fails_while_planning_fails_the_deploy(workdir: Path) -> None:
    # Only the first read fails: nothing may read it again and go on without it.
    node = Reads(Unreachable("TfNode"), converged_facts(spec_of(workdir)).answers[TfNode])

    def tf_node_fact(**arguments: Any) -> Any:
        answer = node(**arguments)
        if isinstance(answer, Exception):
            raise answer
        return answer

    facts = Facts({GpuHost: converged_gpu(), TfNode: tf_node_fact})
    with pytest.raises(Unreachable):
        Run(DATA, facts)(tn.tf_node_deploy, spec_of(workdir))


# -- gpu_base: the driver's reboot, decided when the deploy runs ------------------------

NEW_DRIVER = "550.144.03"


def with_driver(data: dict[str, Any], version: str = NEW_DRIVER, **driver: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    data["nvidia_driver"] = {**data["nvidia_driver"], "version": version, **driver}
    return data


def driver_moved(version: str, state: str = "ok", module: str | None = None) -> GpuHostState:
    """The converged host with driver ``version``'s packages installed, the module
    ``module`` loaded (default: ``version``) and nvidia-smi in ``state``."""
    host = converged_gpu()
    packages = {
        name: Package(f"{version}-1", True) if name.startswith(("nvidia-", "libnvidia-ml")) and
        "container" not in name else package
        for name, package in host.packages.items()
    }  # fmt: skip
    loaded = module or version
    return dataclasses.replace(
        host, packages=packages, module_version=loaded, driver_state=state,
        driver_version=version if state == "ok" else None,
        nvml_version=version if state == "mismatch" else None,
    )  # fmt: skip


def test_a_converged_host_executed_changes_nothing_and_reads_nothing_again(workdir: Path) -> None:
    spec = spec_of(workdir)
    facts = converged_facts(spec)
    facts.answers[ContainerHealth] = healthy({"dev-a": 2, "dev-b": 2})
    steps = Run(DATA, facts)(tn.tf_node_deploy, spec).execute()
    assert changed(steps) == []
    assert step(steps, "Reboot for the NVIDIA driver (only when due)").noop == "no reboot due"
    assert (
        step(steps, "Check the NVIDIA driver answers").noop
        == "driver 550.127.05 answers on 4 GPU(s)"
    )
    assert step(steps, "Health of the containers").noop == "2 container(s) healthy (light check)"
    # Nothing changed: the planning reads serve the checks (no GPU container either).
    assert sorted(name for name, _ in facts.asked[:2]) == ["GpuHost", "TfNode"]
    assert facts.asked[2:] == [
        ("ContainerHealth", {"containers": ["dev-a", "dev-b"], "deep": False})
    ]


def test_the_driver_check_counts_the_declared_gpus(workdir: Path) -> None:
    spec = spec_of(workdir)
    facts = converged_facts(spec)
    facts.answers[ContainerHealth] = healthy({"dev-a": 2, "dev-b": 2})
    gpu = facts.answers[GpuHost]
    facts.answers[GpuHost] = dataclasses.replace(gpu, gpus=gpu.gpus[:3])
    facts.answers[GpuInContainer] = gpus_listed(3)
    steps = Run(DATA, facts)(tn.tf_node_deploy, spec).execute()
    assert step(steps, "Check the NVIDIA driver answers").commands == [
        {"call": "report_failure", "args": ["3 GPU(s) visible, gpu_count declares 4"]}
    ]


def test_the_driver_check_compares_the_declared_kernel_modules(workdir: Path) -> None:
    data = with_driver(DATA, "550.127.05", kernel_modules="proprietary")
    spec = spec_of(workdir, data)
    facts = converged_facts(spec)
    facts.answers[GpuInContainer] = gpus_listed(4)
    steps = Run(data, facts)(gb.gpu_base, spec).execute()
    assert step(steps, "Reboot for the NVIDIA driver (only when due)").commands[-1] == {
        "call": "clean_sudo_info"
    }
    # Still the open module loaded after the install: rebooted, still not right.
    assert step(steps, "Check the NVIDIA driver answers").commands == [
        {"call": "report_failure", "args": [
            "pending reboot: open kernel module loaded, proprietary declared. it was rebooted and "
            "still is not right: check the driver install (dkms status)"]}
    ]  # fmt: skip


class FakeOperation:
    """What CurrentState asks of an operation's result: done yet, and did it change."""

    def __init__(self, complete: bool = False, change: bool = False) -> None:
        self.complete, self.change = complete, change

    def is_complete(self) -> bool:
        return self.complete

    def did_change(self) -> bool:
        assert self.complete, "pyinfra refuses to tell before the operation ran"
        return self.change


def test_current_state_reads_the_host_again_once_per_new_change(workdir: Path) -> None:
    planned, fresh = converged_gpu(), driver_moved(NEW_DRIVER)
    reads = Reads(fresh)
    run = Run(DATA, Facts({GpuHost: reads}))
    done, later, unchanged = FakeOperation(True, True), FakeOperation(), FakeOperation(True)
    current = gb.CurrentState(planned, [done, later, unchanged])
    with ctx_state.use(run.state), ctx_host.use(run.host):
        assert current() is fresh and reads.count == 1  # ``done`` changed the host
        assert current() is fresh and reads.count == 1  # nothing new since
        later.complete, later.change = True, True
        assert current() is fresh and reads.count == 2
        assert current() is fresh and reads.count == 2
    assert gb.CurrentState(planned, [unchanged, FakeOperation()])() is planned


def upgrade_facts(spec: Any, **containers: Any) -> Facts:
    """The converged host, its containers as given, about to move to NEW_DRIVER: the
    packages install (the old module stays loaded: a mismatch), then the reboot."""
    facts = converged_facts(spec, **containers)
    facts.answers[GpuHost] = Reads(
        converged_gpu(),
        driver_moved(NEW_DRIVER, "mismatch", module="550.127.05"),
        driver_moved(NEW_DRIVER),
    )
    facts.answers[ContainerHealth] = healthy({"dev-a": 2, "dev-b": 2})
    facts.answers[GpuInContainer] = gpus_listed(4)
    return facts


def test_a_driver_upgrade_under_a_busy_container_changes_nothing(workdir: Path) -> None:
    data = with_driver(DATA)
    spec = spec_of(workdir, data)
    facts = upgrade_facts(spec, **{"dev-a": {"busy": [SSH_SESSION]}, "dev-b": {"running": False}})
    steps = Run(data, facts)(gb.gpu_base, spec).plan()
    assert names(steps)[:3] == [
        "GPU host base | Clock in sync with this machine",
        "GPU host base | Docker engine 27.3.1 (docker)",
        "GPU host base | Containers idle for the driver's reboot",
    ]
    assert step(steps, "Containers idle for the driver's reboot").commands == BUSY_REFUSAL


def test_a_driver_upgrade_reboots_guarding_only_the_running_containers(workdir: Path) -> None:
    data = with_driver(DATA)
    spec = spec_of(workdir, data)
    facts = upgrade_facts(spec, **{"dev-b": {"running": False}})
    run = Run(data, facts, others=("gpu2", "gpu3"))(gb.gpu_base, spec)
    # pyinfra's _parallel is one value per operation: the smallest batch any host declares
    # (2 here; pyinfra's own default would be all three hosts at once).
    assert run.meta_arguments("Reboot for the NVIDIA driver (only when due)")["_parallel"] == 2
    alone = Run(data, upgrade_facts(spec))(gb.gpu_base, spec)
    assert alone.meta_arguments("Reboot for the NVIDIA driver (only when due)")["_parallel"] == 3
    steps = run.execute()
    assert step(steps, "Containers idle for the driver's reboot").noop == "no container in use"
    reboot = step(steps, "Reboot for the NVIDIA driver (only when due)").commands
    # dev-a's guard (when-idle, no GPU signal after the install), then pyinfra's reboot.
    assert reboot[0].startswith("tfenv_kernels_probe=")
    assert reboot[0].endswith(
        ' tfenv_apps=; r=$(tfenv_busy dev-a 30 ); [ -z "$r" ] || { echo \'tfenv: dev-a came into '
        "use; the host is not rebooted (--data force_busy=true reboots it anyway); the reboot is "
        'pending:\' "$r" >&2; exit 1; }'
    ), reboot[0][-300:]
    assert reboot[1:] == [
        {"call": "remove_any_askpass_file"}, {"call": "capture_uptime"},
        "( sleep 1 && reboot ) </dev/null >/dev/null 2>&1 &",
        {"call": "wait_and_reconnect"}, {"call": "clean_sudo_info"},
    ]  # fmt: skip
    assert (
        step(steps, "Check the NVIDIA driver answers").noop
        == "driver 550.144.03 answers on 4 GPU(s)"
    )
    assert facts.answers[GpuHost].count == 3


def test_a_driver_upgrade_on_a_host_that_never_reboots_is_left_to_a_person(
    workdir: Path,
) -> None:
    data = with_driver(DATA, reboot="never")
    spec = spec_of(workdir, data)
    facts = upgrade_facts(spec, **{"dev-a": {"busy": [SSH_SESSION]}})
    steps = Run(data, facts)(gb.gpu_base, spec).execute()
    # No idle check before the install: nothing is rebooted under anyone.
    assert "GPU host base | Containers idle for the driver's reboot" not in names(steps)
    assert step(steps, "NVIDIA driver 550.144.03 (open modules)").commands
    reboot = step(steps, "Reboot for the NVIDIA driver (only when due)")
    assert (reboot.commands, reboot.noop) == ([], "reboot due, but the data says reboot: never")
    assert step(steps, "Check the NVIDIA driver answers").commands == [
        {"call": "report_failure", "args": [
            "pending reboot: driver/library mismatch: kernel module 550.127.05, library "
            "550.144.03; reboot required. reboot is 'never' in the data: reboot it in a "
            "maintenance window and run the deploy again; GPU containers stay off it until then"]}
    ]  # fmt: skip


def test_force_busy_reboots_under_a_busy_container_after_a_notice(workdir: Path) -> None:
    data = {**with_driver(DATA), "force_busy": True}
    spec = spec_of(workdir, data)
    facts = upgrade_facts(spec, **{"dev-a": {"busy": [SSH_SESSION]}})
    steps = Run(data, facts)(gb.gpu_base, spec).execute()
    assert step(steps, "Containers idle for the driver's reboot").noop == "no container in use"
    guards = step(steps, "Reboot for the NVIDIA driver (only when due)").commands
    # Both running containers get the "now" guard: a notice on their terminals, no refusal.
    notice = "this host is rebooted (NVIDIA driver) and {} restarts in"
    assert [
        notice.format(name) in g for g, name in zip(guards, ("dev-a", "dev-b"), strict=False)
    ] == [True, True]
    assert "came into use" not in guards[0] + guards[1]


# -- spec: the declared data a deploy runs with ------------------------------------------


def test_host_spec_loads_the_hosts_data_relative_to_the_working_directory(workdir: Path) -> None:
    run = Run(DATA, Facts({}))
    spec = deploy_spec.host_spec(run.host)
    assert spec == spec_of(workdir)
    assert spec.host == HOST and spec.image_lock is not None
    assert spec.image_lock.path == workdir / "images.lock.yaml"


def test_host_spec_takes_another_base_directory(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.chdir(elsewhere)  # the fixture's monkeypatch.chdir puts the cwd back
    run = Run(DATA, Facts({}))
    assert deploy_spec.host_spec(run.host, workdir) == spec_of(workdir)
    with pytest.raises(DeployError):
        deploy_spec.host_spec(run.host)  # the lock and secrets are not here


def test_host_spec_names_every_problem_of_the_host(workdir: Path) -> None:
    data = copy.deepcopy(DATA)
    data["gpu_count"] = -1
    data["containers"]["dev-a"]["restart"] = "sometimes"
    with pytest.raises(DeployError) as raised:
        deploy_spec.host_spec(Run(data, Facts({})).host)
    assert str(raised.value) == (
        "gpu1: invalid declared data:\n"
        "gpu1: gpu_count: expected greater than or equal to 0, got -1\n"
        "gpu1: containers.dev-a.restart: expected 'no', 'always', 'unless-stopped' or "
        "'on-failure', got 'sometimes'"
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_secret_value_reads_the_declared_secret(workdir: Path) -> None:
    spec = spec_of(workdir)
    assert deploy_spec.secret_value(spec, "token").reveal() == TOKEN
    assert deploy_spec.secret_value(spec, "token").name == "token"
    os.chdir("/")
    assert deploy_spec.secret_value(spec, "reg_pw", workdir).reveal() == REG_PASSWORD


def test_a_secret_gone_since_the_check_fails_the_deploy_without_its_value(workdir: Path) -> None:
    spec = spec_of(workdir)
    (workdir / "secrets" / "token").unlink()
    with pytest.raises(DeployError) as raised:
        deploy_spec.secret_value(spec, "token")
    assert str(raised.value).startswith("gpu1: secret 'token': expected ")
    assert raised.value.__suppress_context__


def test_registry_inputs_are_the_logins_and_ca_certificates(workdir: Path) -> None:
    spec = spec_of(workdir)
    logins, cas = deploy_spec.registry_inputs(spec)
    assert logins == {"registry.test:5000": ("robot", SecretValue("reg_pw", REG_PASSWORD))}
    assert cas == {"registry.test:5000": CA_PEM}
    os.chdir("/")
    assert deploy_spec.registry_inputs(spec, workdir) == (logins, cas)


def test_a_registry_without_a_ca_file_has_no_certificate(workdir: Path) -> None:
    data = copy.deepcopy(DATA)
    data["registries"]["registry.test:5000"].pop("ca_file")
    data["registries"]["other.test"] = {"username": "bot", "password_secret": "token"}
    logins, cas = deploy_spec.registry_inputs(spec_of(workdir, data))
    assert logins == {
        "registry.test:5000": ("robot", SecretValue("reg_pw", REG_PASSWORD)),
        "other.test": ("bot", SecretValue("token", TOKEN)),
    }
    assert cas == {}


def test_pinned_image_goes_through_the_lock(workdir: Path) -> None:
    spec = spec_of(workdir)
    assert deploy_spec.pinned_image(spec, TF_B) == PINNED_B
    with pytest.raises(DeployError) as raised:
        deploy_spec.pinned_image(spec, "registry.test:5000/ml/tf:9.9")
    assert str(raised.value) == (
        "gpu1: registry.test:5000/ml/tf:9.9 is not pinned in the lock; run tfenv lock"
    )
    no_lock = spec.model_copy(update={"image_lock": None})
    with pytest.raises(DeployError, match="is not pinned in the lock"):
        deploy_spec.pinned_image(no_lock, TF_B)


# -- reconcile_timer: the nightly reconcile on a control node ---------------------------

TIMER = {"inventory": "inventories/gpu.py", "workdir": "/srv/fleet", "schedule": "*-*-* 03:00:00"}


def test_reconcile_timer_plans_user_directories_units_and_timer() -> None:
    from pyinfra.facts.files import Directory, File, Sha1File
    from pyinfra.facts.server import Groups, Os, TmpDir, Users, Which
    from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

    facts = Facts({
        Users: {}, Groups: [], Directory: None, File: None, Sha1File: None, Os: "Linux",
        Which: "/usr/bin/systemctl", SystemdStatus: {}, SystemdEnabled: {}, TmpDir: "/tmp",
    })  # fmt: skip
    run = Run({"reconcile": TIMER}, facts)(reconcile_timer_for_host)
    check_golden("reconcile_timer_fresh", run.plan())


def test_reconcile_timer_data_is_checked_before_any_operation() -> None:
    run = Run({}, Facts({}))
    with pytest.raises(DeployError) as raised:
        run(reconcile_timer_for_host)
    assert str(raised.value) == (
        "gpu1: invalid declared data:\ngpu1: reconcile: expected a reconcile: section, got nothing"
    )
    assert raised.value.__suppress_context__
    assert run.plan() == []
    with pytest.raises(DeployError) as raised:
        timer_spec("ctl", {**TIMER, "schedule": "at dawn!", "user": "Root"})
    assert str(raised.value).splitlines()[0] == "ctl: invalid declared data:"
    assert [line.split(":")[1] for line in str(raised.value).splitlines()[1:]] == [
        " reconcile.schedule",
        " reconcile.user",
    ]
    assert timer_spec("ctl", TIMER).workdir == "/srv/fleet"
