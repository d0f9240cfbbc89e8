"""``tfenv image build`` against a registry stand-in on 127.0.0.1 (TLS): a tag the
registry holds is "already built" only under the lock's digest. ``tfenv hotfix
finish``: the step a real pyinfra run (``@local``, a stand-in deploy) hands to the
host, and the host side's refusal of uncommitted work without --discard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from conftest import DIGEST_A, DIGEST_B, GOOD_DATA
from pyinfra.context import ctx_host
from test_image_build_units import make_plan
from tls_server import tls_server

from tfenv import hotfix as hf
from tfenv.cli import main
from tfenv.deploys import hotfix as deploy
from tfenv.facts.hotfix import Hotfix, HotfixState
from tfenv.facts.tf_node import ObservedContainer, TfNode, TfNodeState
from tfenv.images.build import BuildError, Plan, build
from tfenv.images.lock import ImageLock, LockedImage
from tfenv.images.registry import MANIFEST_TYPES
from tfenv.layout import HOTFIX_BRANCH_LABEL, HOTFIX_OF_LABEL, HOTFIX_REPO_LABEL
from tfenv.model.load import load
from tfenv.model.spec import Registry
from tfenv.reconcile.env import OUT_ENV

# --- 10. image build: "already built" only when the registry's digest is the lock's ---------


class Manifests(BaseHTTPRequestHandler):
    """An anonymous registry holding one tag (``served``: repository path -> digest)."""

    served: ClassVar[dict[str, str]] = {}

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self) -> None:
        digest = self.served.get(self.path)
        self.send_response(200 if digest else 404)
        if digest:
            self.send_header("Content-Type", MANIFEST_TYPES[0])
            self.send_header("Docker-Content-Digest", digest)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The registry stand-in's port and the CA that signed its certificate. Per test:
    a server thread must not outlive a test that loads pyinfra's CLI (gevent's
    patching of threading would leave it impossible to stop)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Manifests)
    with tls_server(server, tmp_path / "registry") as ca:
        yield server.server_port, ca


def plan_against(registry: tuple[int, Path], tmp_path: Path, locked: str | None,
                 in_registry: str, monkeypatch: pytest.MonkeyPatch) -> Plan:  # fmt: skip
    """A build plan whose push registry is the stand-in (holding the spec's tag as
    ``in_registry``) and whose lock pins the tag as ``locked`` (None: not at all)."""
    port, ca = registry
    spec = Registry(username="robot", password_secret="reg_pw", ca_file=str(ca),
                    endpoint=f"https://127.0.0.1:{port}")  # fmt: skip
    plan = make_plan(tmp_path, registry_spec=spec)
    reference = plan.spec.reference
    images = {reference: LockedImage(reference, locked)} if locked else {}
    plan.lock = ImageLock(plan.lock_path, images)
    path = f"/v2/team/tf-dev/manifests/{plan.spec.tag}"
    monkeypatch.setattr(Manifests, "served", {path: in_registry})
    return plan


def test_a_tag_pushed_under_the_locked_digest_is_already_built(
    registry: tuple[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_against(registry, tmp_path, DIGEST_A, DIGEST_A, monkeypatch)
    said: list[str] = []
    built = build(plan, said.append)
    assert built.digest is None  # nothing pushed
    assert f"is already built, pushed and locked ({DIGEST_A})" in built.note
    assert said == []  # no docker step ran


def test_a_tag_the_registry_holds_under_another_digest_is_refused(
    registry: tuple[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_against(registry, tmp_path, DIGEST_A, DIGEST_B, monkeypatch)
    said: list[str] = []
    with pytest.raises(BuildError) as refused:
        build(plan, said.append)
    message = str(refused.value)
    assert f"already holds {plan.spec.reference} as {DIGEST_B}" in message
    assert f"pins differently: {DIGEST_A}" in message
    assert "Tags are never moved" in message
    assert said == []


def test_a_tag_the_registry_holds_but_the_lock_lacks_is_refused(
    registry: tuple[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_against(registry, tmp_path, None, DIGEST_B, monkeypatch)
    with pytest.raises(BuildError, match="which the lock does not have"):
        build(plan, lambda _: None)


# --- 9. hotfix finish: uncommitted work is refused without --discard -------------------------

# A stand-in for deploys/hotfix.py: it answers with the step the control side wrote.
ECHO_DEPLOY = """
from pyinfra import host
from tfenv.deploys.hotfix import load_step
from tfenv.drift import write_line
step = load_step()
write_line({"host": host.name, "branch": "hotfix/v1.4", "step": step})
"""


@pytest.mark.parametrize("discard", [False, True])
def test_hotfix_finish_hands_discard_to_the_host_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, discard: bool
) -> None:
    (tmp_path / "deploys").mkdir()
    (tmp_path / hf.DEPLOY).write_text(ECHO_DEPLOY)
    (tmp_path / "inventory.py").write_text('hosts = ["@local"]\n')
    monkeypatch.chdir(tmp_path)  # pyinfra runs from here: the stand-in deploy
    request = hf.Request("inventory.py", "@local", "dev-a", "finish", discard=discard)

    result = hf.run(request, lambda _: None)

    assert result["step"] == {"phase": "finish", "host": "@local", "container": "dev-a",
                              "ref": "", "image": "", "repo": "", "discard": discard}  # fmt: skip


class Host:
    """The host as hotfix_step reads it: its name and the two facts, already read."""

    def __init__(self, name: str, node: TfNodeState, state: HotfixState) -> None:
        self.name = name
        self.node, self.state = node, state
        self.asked: list[dict] = []

    def get_fact(self, fact: type, **arguments: object) -> object:
        if fact is TfNode:
            return self.node
        assert fact is Hotfix
        self.asked.append(arguments)
        return self.state


def finish_on_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workdir: Path, state: HotfixState,
    discard: bool, busy: list[str] | None = None,
) -> tuple[list[dict], Host]:  # fmt: skip
    """deploys/hotfix.py's finish step on ``node-1`` (conftest's GOOD_DATA, container
    dev-a with its sibling running): the result lines it wrote and the host."""
    step = tmp_path / "step.json"
    sent = {"phase": "finish", "host": "node-1", "container": "dev-a", "ref": "", "image": "",
            "repo": "", "discard": discard}  # fmt: skip
    step.write_text(json.dumps(sent))
    out = tmp_path / "out.jsonl"
    out.touch()
    monkeypatch.setenv(deploy.STEP_ENV, str(step))
    monkeypatch.setenv(OUT_ENV, str(out))
    spec = load("node-1", GOOD_DATA, workdir)
    twin = ObservedContainer(
        name="dev-a-hotfix", id="x", image_id="y", running=True, status="running", health=None,
        labels={HOTFIX_OF_LABEL: "dev-a", HOTFIX_BRANCH_LABEL: "hotfix/v1.4",
                HOTFIX_REPO_LABEL: "proj"},
        busy=busy or [], busy_checked=True,
    )  # fmt: skip
    host = Host("node-1", TfNodeState(docker="ok", containers={twin.name: twin}), state)
    with ctx_host.use(host):
        deploy.hotfix_step(spec)
    return [json.loads(line) for line in out.read_text().splitlines()], host


DIRTY = HotfixState(running=True, repos=["proj"], worktree_branch="hotfix/v1.4",
                    dirty=[" M train.py", "?? notes.txt"], read_inside=True)  # fmt: skip


def test_hotfix_finish_refuses_uncommitted_work_without_discard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    lines, host = finish_on_host(tmp_path, monkeypatch, workdir, DIRTY, discard=False)
    assert lines == [{
        "host": "node-1", "repo": "proj", "branch": "hotfix/v1.4",
        "worktree": "/home/alice/hotfix/proj", "sibling": "dev-a-hotfix",
        "error": "uncommitted files in the hotfix worktree /home/alice/hotfix/proj:  M train.py; "
                 "?? notes.txt. Commit them, or finish with --discard to drop them",
    }]  # fmt: skip
    # The worktree and branch read were the sibling's own (its labels).
    assert host.asked[0]["worktree"] == "/home/alice/hotfix/proj"
    assert host.asked[0]["branch"] == "hotfix/v1.4"


def test_hotfix_finish_refuses_a_sibling_in_use_without_discard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    clean = HotfixState(running=True, repos=["proj"], worktree_branch="hotfix/v1.4",
                        read_inside=True)  # fmt: skip
    lines, _ = finish_on_host(tmp_path, monkeypatch, workdir, clean, discard=False,
                              busy=["ssh 0100A8C0:D10E"])  # fmt: skip
    assert len(lines) == 1
    assert lines[0]["error"] == (
        "dev-a-hotfix is in use (ssh 0100A8C0:D10E): close those sessions, or finish with --discard"
    )


# The stand-in answers as the host does once it removed the sibling and the worktree:
# the uncommitted files it dropped, which it does only when the step says --discard.
ANSWER_DEPLOY = """
from pyinfra import host
from tfenv.deploys.hotfix import load_step
from tfenv.drift import write_line
step = load_step()
write_line({"host": host.name, "repo": "proj", "branch": "hotfix/v1.4",
            "worktree": "/home/alice/hotfix/proj", "sibling": "dev-a-hotfix",
            "had_sibling": True, "had_worktree": True,
            "dirty": [" M train.py"] if step["discard"] else []})
"""


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        ([], "removed; branch hotfix/v1.4 kept."),
        (["--discard"], "removed; 1 uncommitted file(s) discarded; branch hotfix/v1.4 kept."),
    ],
)
def test_the_hotfix_finish_command_passes_discard_only_when_given(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], said: str
) -> None:
    (workdir / "deploys").mkdir()
    (workdir / hf.DEPLOY).write_text(ANSWER_DEPLOY)
    (workdir / "inventory.py").write_text(f"hosts = [('@local', {GOOD_DATA!r})]\n")
    monkeypatch.chdir(workdir)
    result = CliRunner().invoke(
        main, ["hotfix", "finish", "@local", "dev-a", "--inventory", "inventory.py", *flags]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Hotfix of dev-a on @local finished: dev-a-hotfix and /home/alice/hotfix/proj {said}\n"
    )
