"""The per-host steps the control side hands to pyinfra runs (``tfenv hotfix``,
``tfenv rollout``, ``tfenv rollout --driver``): a step file in, the result line
and the exact operations out. The harness and the host are those of
tests/test_deploy_plans.py (a real pyinfra State, facts from the test)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import OperationError
from test_deploy_plans import (
    BUSY_REFUSAL,
    DATA,
    HOST,
    PINNED_A,
    PINNED_B,
    SSH_SESSION,
    TF_A,
    TF_B,
    Facts,
    Reads,
    Run,
    changed,
    converged_facts,
    converged_gpu,
    driver_moved,
    forget_the_run,
    healthy,
    names,
    prepare_workdir,
    spec_of,
    step,
)

from tfenv import layout
from tfenv.containers.desired import Port
from tfenv.deploys import driver_rollout as dr
from tfenv.deploys import hotfix as hf
from tfenv.deploys import rollout as ro
from tfenv.facts.canary import CanaryCheck, RolloutLocks
from tfenv.facts.gpu import GpuHost, Package
from tfenv.facts.hotfix import Hotfix, HotfixState
from tfenv.facts.tf_node import TfNode
from tfenv.operations.container_health import ContainerHealth
from tfenv.reconcile.env import OUT_ENV
from tfenv.rollout.env import STEP_ENV as ROLLOUT_STEP_ENV


@pytest.fixture(autouse=True)
def one_run_each() -> Iterator[None]:
    forget_the_run()
    yield
    forget_the_run()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return prepare_workdir(tmp_path, monkeypatch)


class Lines:
    """The step file a control side writes, and the result lines the host writes back."""

    def __init__(self, workdir: Path, monkeypatch: pytest.MonkeyPatch, env: str) -> None:
        self.step_path, self.out = workdir / "step.json", workdir / "out.jsonl"
        self.out.touch()
        monkeypatch.setenv(env, str(self.step_path))
        monkeypatch.setenv(OUT_ENV, str(self.out))

    def send(self, step: dict[str, Any]) -> None:
        self.step_path.write_text(json.dumps(step))

    def read(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines()]


# -- hotfix --------------------------------------------------------------------------


# Pure helpers first: a broken port search must fail fast, not loop in a deploy.
def test_free_ports_move_each_port_above_itself_past_what_is_taken() -> None:
    ports = (Port("2222/tcp", "0.0.0.0", "2201"), Port("8888/tcp", "127.0.0.1", "2202"))
    assert hf.free_ports(ports, {2202, 2203}) == (
        Port("2222/tcp", "0.0.0.0", "2204"), Port("8888/tcp", "127.0.0.1", "2205"),
    )  # fmt: skip
    assert hf.free_ports((Port("22/tcp", "0.0.0.0", "65534"),), set()) == (
        Port("22/tcp", "0.0.0.0", "65535"),
    )
    with pytest.raises(OperationError, match="no free host port above 65534"):
        hf.free_ports((Port("22/tcp", "0.0.0.0", "65534"),), {65535})
    assert hf.free_ports((), {1}) == ()
    # The next free one, not one further.
    assert hf.free_ports((Port("22/tcp", "0.0.0.0", "2201"),), {2202}) == (
        Port("22/tcp", "0.0.0.0", "2203"),
    )


HOME = "/home/alice"
WORKTREE = "/home/alice/hotfix/proj"
CLEAN = HotfixState(running=True, repos=["proj"], ref_ok=True, read_inside=True)


@pytest.fixture
def hotfix_lines(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Lines:
    return Lines(workdir, monkeypatch, hf.STEP_ENV)


def start(ref: str = "v1.4", repo: str = "proj", **more: Any) -> dict[str, Any]:
    return {"phase": "start", "host": HOST, "container": "dev-a", "ref": ref, "repo": repo,
            "image": "", **more}  # fmt: skip


def finish(discard: bool = False, **more: Any) -> dict[str, Any]:
    return {"phase": "finish", "host": HOST, "container": "dev-a", "ref": "", "repo": "",
            "image": "", "discard": discard, **more}  # fmt: skip


def hotfix_facts(workdir: Path, *states: HotfixState, **containers: Any) -> Facts:
    """The converged host (``containers``: more of them, or changes), ``states`` the
    Hotfix fact's successive answers."""
    facts = converged_facts(spec_of(workdir))
    node = facts.answers[TfNode]
    for name, value in containers.items():
        if isinstance(value, dict):
            node.containers[name] = dataclasses.replace(node.containers[name], **value)
        else:
            node.containers[name] = value
    facts.answers[Hotfix] = Reads(*states)
    return facts


def hotfix_run(workdir: Path, facts: Facts) -> Run:
    return Run(DATA, facts)(hf.hotfix_step, spec_of(workdir))


def sibling_of_dev_a(workdir: Path, ports: str | None = "2203,8802", **labels: str | None) -> Any:
    """dev-a's hotfix sibling as a start made it (its labels say what it was started with;
    a label given as None: a sibling without it)."""
    node = converged_facts(spec_of(workdir)).answers[TfNode]
    made = {**node.containers["dev-a"].labels, hf.OF_LABEL: "dev-a",
            hf.BRANCH_LABEL: "hotfix/v1.4", hf.REPO_LABEL: "proj",
            hf.WORKTREE_LABEL: WORKTREE, hf.PORTS_LABEL: ports, **labels}  # fmt: skip
    made = {key: value for key, value in made.items() if value is not None}
    return dataclasses.replace(node.containers["dev-a"], name="dev-a-hotfix", labels=made)


def test_a_step_for_another_host_does_nothing_here(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send({**start(), "host": "gpu9"})
    facts = hotfix_facts(workdir, CLEAN)
    run = hotfix_run(workdir, facts)
    assert (hotfix_lines.read(), run.plan(), facts.asked) == ([], [], [])


def test_a_container_not_declared_is_an_error_line(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send({**start(), "container": "dev-z"})
    run = hotfix_run(workdir, hotfix_facts(workdir, CLEAN))
    assert hotfix_lines.read() == [
        {"host": HOST, "error": "no container dev-z is declared on gpu1"}
    ]
    assert run.plan() == []


def test_start_makes_the_worktree_then_the_sibling_on_free_ports(
    workdir: Path, hotfix_lines: Lines
) -> None:
    hotfix_lines.send(start())
    # 2202 is dev-b's, 2203 listens already: the sibling's SSH port is 2204.
    state = dataclasses.replace(CLEAN, listening={2203, 22})
    facts = hotfix_facts(workdir, state)
    run = hotfix_run(workdir, facts)
    assert facts.reads(TfNode) == [{}]  # one read serves every operation
    assert facts.reads(Hotfix) == [{
        "container": "dev-a", "user": "2001:2001", "home": HOME, "repo": "proj",
        "worktree": WORKTREE, "branch": "hotfix/v1.4", "ref": "v1.4",
    }]  # fmt: skip
    assert hotfix_lines.read() == [{
        "host": HOST, "repo": "proj", "branch": "hotfix/v1.4", "worktree": WORKTREE,
        "sibling": "dev-a-hotfix", "image": PINNED_A, "ports": [["2222/tcp", "2204"],
        ["8888/tcp", "8802"]], "user_name": "alice", "existed": False, "ssh_port": 2222,
        "jupyter_port": 8888, "branch_existed": False,
    }]  # fmt: skip
    steps = run.plan()
    assert names(steps) == [
        "Secret files and authorized keys of dev-a",
        "Worktree /home/alice/hotfix/proj on hotfix/v1.4",
        f"Container dev-a-hotfix ({PINNED_A})",
        "Pending replacements",
        "Health of dev-a-hotfix",
    ]
    assert changed(steps) == [names(steps)[1], names(steps)[2]]
    assert step(steps, "on hotfix/v1.4").commands == [
        "docker exec -u 2001:2001 -w /home/alice dev-a git -C proj worktree add -b hotfix/v1.4 "
        "/home/alice/hotfix/proj v1.4"
    ]
    run_sibling = step(steps, "Container dev-a-hotfix").commands[-1]
    for part in (
        "docker run -d --name dev-a-hotfix --user 2001:2001",
        "--env TFENV_HOTFIX_WORKTREE=/home/alice/hotfix/proj",
        "--label tfenv.container=dev-a-hotfix",
        "--label tfenv.hotfix.branch=hotfix/v1.4 --label tfenv.hotfix.of=dev-a "
        "--label tfenv.hotfix.ports=2204,8802 --label tfenv.hotfix.repo=proj "
        "--label tfenv.hotfix.worktree=/home/alice/hotfix/proj",
        "--publish 0.0.0.0:2204:2222/tcp --publish 127.0.0.1:8802:8888/tcp",
        # The original's home, keys and secrets: the same files, not copies.
        "source=/var/lib/tfenv/containers/dev-a/home,target=/home/alice",
        "source=/etc/tfenv/containers/dev-a/authorized_keys,target=/etc/tfenv/authorized_keys",
        "source=/etc/tfenv/secrets/dev-a/token,target=/run/secrets/token",
        f" {PINNED_A} >/dev/null",
    ):
        assert part in run_sibling, part


def test_start_again_keeps_the_siblings_ports_and_continues_its_branch(
    workdir: Path, hotfix_lines: Lines
) -> None:
    hotfix_lines.send(start(image=TF_B))
    state = dataclasses.replace(CLEAN, worktree_branch="hotfix/v1.4", branch_exists=True)
    facts = hotfix_facts(workdir, state, **{"dev-a-hotfix": sibling_of_dev_a(workdir, "2301,2302")})
    steps = hotfix_run(workdir, facts).plan()
    line = hotfix_lines.read()[0]
    assert (line["ports"], line["existed"], line["branch_existed"], line["image"]) == (
        [["2222/tcp", "2301"], ["8888/tcp", "2302"]],
        True,
        True,
        PINNED_B,
    )
    assert step(steps, "on hotfix/v1.4").noop == (
        "/home/alice/hotfix/proj is checked out on hotfix/v1.4"
    )
    # Another image than dev-a's: the sibling is recreated with it, on the same ports.
    assert "--publish 0.0.0.0:2301:2222/tcp --publish 127.0.0.1:2302:8888/tcp" in str(steps)
    assert names(steps)[2] == f"Container dev-a-hotfix ({PINNED_B})"


@pytest.mark.parametrize("kept", ["2301", "2301,x", "", None])
def test_ports_a_sibling_does_not_name_in_full_are_chosen_again(
    workdir: Path, hotfix_lines: Lines, kept: str | None
) -> None:
    hotfix_lines.send(start())
    facts = hotfix_facts(workdir, CLEAN, **{"dev-a-hotfix": sibling_of_dev_a(workdir, kept)})
    hotfix_run(workdir, facts)
    assert hotfix_lines.read()[0]["ports"] == [["2222/tcp", "2203"], ["8888/tcp", "8802"]]


def test_an_existing_branch_is_checked_out_not_made(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send(start())
    state = dataclasses.replace(CLEAN, branch_exists=True, ref_ok=False)
    steps = hotfix_run(workdir, hotfix_facts(workdir, state)).plan()
    assert step(steps, "on hotfix/v1.4").commands == [
        "docker exec -u 2001:2001 -w /home/alice dev-a git -C proj worktree add "
        "/home/alice/hotfix/proj hotfix/v1.4"
    ]


def test_a_ref_that_is_not_there_fails_the_worktree(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send(start(ref="nope"))
    facts = hotfix_facts(workdir, dataclasses.replace(CLEAN, ref_ok=False))
    with pytest.raises(OperationError, match="nope is not a commit, branch or tag of ~/proj"):
        hotfix_run(workdir, facts)


def test_a_worktree_on_another_branch_must_be_finished_first(
    workdir: Path, hotfix_lines: Lines
) -> None:
    hotfix_lines.send(start())
    state = dataclasses.replace(CLEAN, worktree_branch="hotfix/v1.3")
    with pytest.raises(OperationError) as raised:
        hotfix_run(workdir, hotfix_facts(workdir, state))
    assert str(raised.value) == (
        "/home/alice/hotfix/proj exists on hotfix/v1.3, not hotfix/v1.4: finish that hotfix "
        "first (tfenv hotfix finish gpu1 dev-a)"
    )


def test_start_without_a_repo_takes_the_only_one_in_the_home(
    workdir: Path, hotfix_lines: Lines
) -> None:
    hotfix_lines.send(start(repo=""))
    first = HotfixState(running=True, repos=["research"], read_inside=True)
    second = dataclasses.replace(first, ref_ok=True)
    facts = hotfix_facts(workdir, first, second)
    hotfix_run(workdir, facts)
    reads = facts.reads(Hotfix)
    assert [(r["repo"], r["worktree"]) for r in reads] == [
        ("", ""),
        ("research", "/home/alice/hotfix/research"),
    ]
    assert reads[1] == {
        "container": "dev-a", "user": "2001:2001", "home": HOME, "repo": "research",
        "worktree": "/home/alice/hotfix/research", "branch": "hotfix/v1.4", "ref": "v1.4",
    }  # fmt: skip
    assert hotfix_lines.read()[0]["repo"] == "research"


@pytest.mark.parametrize(
    ("state", "repo", "error"),
    [
        (HotfixState(error="Error: No such object: dev-a"), "proj",
         "could not read dev-a: Error: No such object: dev-a"),
        (HotfixState(error="Error: No such object: dev-a"), "",
         "could not read dev-a: Error: No such object: dev-a"),
        (HotfixState(running=False), "proj",
         "dev-a is not running: the worktree is made inside it (start it first)"),
        (HotfixState(running=True, git=False), "proj", "git is not installed in dev-a's image"),
        (HotfixState(running=True, repo_found=False), "proj",
         "~/proj is not a git repository in dev-a"),
        (HotfixState(running=True, repo_found=False), "",
         "no git repository at the top of the home directory: name one with --repo"),
        (HotfixState(running=True, repos=["a", "b"]), "",
         "several repositories (a, b): name one with --repo"),
    ],
)  # fmt: skip
def test_start_refuses_what_it_cannot_do_inside_the_container(
    workdir: Path, hotfix_lines: Lines, state: HotfixState, repo: str, error: str
) -> None:
    hotfix_lines.send(start(repo=repo))
    run = hotfix_run(workdir, hotfix_facts(workdir, state))
    assert hotfix_lines.read() == [{"host": HOST, "error": error}]
    assert run.plan() == []


def test_start_without_a_repo_checks_the_repo_it_found(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send(start(repo=""))
    found = HotfixState(running=True, repos=["proj"])
    facts = hotfix_facts(workdir, found, dataclasses.replace(found, repo_found=False))
    hotfix_run(workdir, facts)
    assert hotfix_lines.read() == [
        {"host": HOST, "error": "~/proj is not a git repository in dev-a"}
    ]


def test_start_on_a_branch_named_by_the_step(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send(start(ref="", branch="hotfix/mine"))
    state = dataclasses.replace(CLEAN, branch_exists=True)
    facts = hotfix_facts(workdir, state)
    steps = hotfix_run(workdir, facts).plan()
    assert facts.reads(Hotfix)[0]["branch"] == "hotfix/mine"
    assert facts.reads(Hotfix)[0]["ref"] == ""
    assert (
        step(steps, "Worktree")
        .commands[0]
        .endswith("worktree add /home/alice/hotfix/proj hotfix/mine")
    )


def test_start_on_a_container_without_jupyter(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send({**start(), "container": "dev-b"})
    facts = hotfix_facts(workdir, CLEAN)
    steps = hotfix_run(workdir, facts).plan()
    line = hotfix_lines.read()[0]
    assert (line["jupyter_port"], line["user_name"], line["image"]) == (None, "bob", PINNED_B)
    assert line["ports"] == [["2222/tcp", "2203"]]  # 2202 is dev-b's own
    assert names(steps)[0] == "Secret files and authorized keys of dev-b"


def test_the_sibling_is_checked_as_its_container_is_when_the_step_runs(
    workdir: Path, hotfix_lines: Lines
) -> None:
    data = copy.deepcopy(DATA)
    data["containers"]["dev-a"]["gpus"] = "all"
    hotfix_lines.send(start())
    facts = hotfix_facts(workdir, CLEAN)
    # Two GPUs seen inside where all four are declared, and Jupyter not answering.
    answer = healthy({"dev-a-hotfix": 2})
    facts.answers[ContainerHealth] = lambda **arguments: {
        name: {**result, "probe": {**result["probe"], "jupyter": "no answer"}}
        for name, result in answer(**arguments).items()
    }
    run = Run(data, facts)(hf.hotfix_step, spec_of(workdir, data))
    steps = run.execute()
    assert facts.reads(ContainerHealth) == [{"containers": ["dev-a-hotfix"], "deep": True}]
    assert step(steps, "Health of dev-a-hotfix").commands == [
        {"call": "report_failure", "args": [
            "container dev-a-hotfix: Jupyter: no answer; 2 GPU(s) visible inside, 4 declared. "
            "See: docker logs dev-a-hotfix"]}
    ]  # fmt: skip


DIRTY = dataclasses.replace(CLEAN, worktree_branch="hotfix/v1.4", dirty=[" M train.py", "?? n.txt"])


def test_finish_refuses_uncommitted_work(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send(finish())
    facts = hotfix_facts(workdir, DIRTY, **{"dev-a-hotfix": sibling_of_dev_a(workdir)})
    run = hotfix_run(workdir, facts)
    assert hotfix_lines.read() == [{
        "host": HOST, "repo": "proj", "branch": "hotfix/v1.4", "worktree": WORKTREE,
        "sibling": "dev-a-hotfix",
        "error": "uncommitted files in the hotfix worktree /home/alice/hotfix/proj:  M train.py; "
                 "?? n.txt. Commit them, or finish with --discard to drop them",
    }]  # fmt: skip
    assert run.plan() == []
    # What the sibling was started with, from its labels.
    assert facts.reads(Hotfix) == [{
        "container": "dev-a", "user": "2001:2001", "home": HOME, "repo": "proj",
        "worktree": WORKTREE, "branch": "hotfix/v1.4", "ref": "",
    }]  # fmt: skip


def test_finish_lists_at_most_ten_uncommitted_files(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send(finish())
    many = dataclasses.replace(DIRTY, dirty=[f"?? f{i}" for i in range(12)])
    hotfix_run(workdir, hotfix_facts(workdir, many, **{"dev-a-hotfix": sibling_of_dev_a(workdir)}))
    assert "?? f9. Commit" in hotfix_lines.read()[0]["error"]


def test_finish_refuses_a_sibling_in_use(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send(finish())
    twin = dataclasses.replace(sibling_of_dev_a(workdir), busy=[SSH_SESSION, "gpu 7,python,10"])
    clean = dataclasses.replace(DIRTY, dirty=[])
    run = hotfix_run(workdir, hotfix_facts(workdir, clean, **{"dev-a-hotfix": twin}))
    assert hotfix_lines.read()[0]["error"] == (
        f"dev-a-hotfix is in use ({SSH_SESSION}; gpu 7,python,10): close those sessions, or "
        "finish with --discard"
    )
    assert run.plan() == []


@pytest.mark.parametrize("discard", [False, True])
def test_finish_removes_the_sibling_and_the_worktree_keeping_the_branch(
    workdir: Path, hotfix_lines: Lines, discard: bool
) -> None:
    hotfix_lines.send(finish(discard=discard))
    twin = dataclasses.replace(sibling_of_dev_a(workdir), busy=[SSH_SESSION] if discard else [])
    state = DIRTY if discard else dataclasses.replace(DIRTY, dirty=[])
    facts = hotfix_facts(workdir, state, **{"dev-a-hotfix": twin})
    steps = hotfix_run(workdir, facts).plan()
    assert facts.reads(TfNode) == [{}]
    assert hotfix_lines.read() == [{
        "host": HOST, "repo": "proj", "branch": "hotfix/v1.4", "worktree": WORKTREE,
        "sibling": "dev-a-hotfix", "dirty": state.dirty, "had_sibling": True,
        "had_worktree": True,
    }]  # fmt: skip
    force = " --force" if discard else ""
    assert [s.as_plan() for s in steps] == [
        {"op": "Remove dev-a-hotfix", "commands": [
            "docker rm -f dev-a-hotfix",
            "rmdir --ignore-fail-on-non-empty /var/lib/tfenv/containers/dev-a-hotfix/ssh-host-keys "
            "/var/lib/tfenv/containers/dev-a-hotfix 2>/dev/null || true"]},
        {"op": "Remove the worktree /home/alice/hotfix/proj", "commands": [
            f"docker exec -u 2001:2001 -w /home/alice dev-a git -C proj worktree remove{force} "
            "/home/alice/hotfix/proj"]},
    ]  # fmt: skip


def test_finish_with_nothing_left_is_two_noops(workdir: Path, hotfix_lines: Lines) -> None:
    hotfix_lines.send(finish(repo="proj", ref="v1.4"))
    steps = hotfix_run(workdir, hotfix_facts(workdir, CLEAN)).plan()
    line = hotfix_lines.read()[0]
    assert (line["had_sibling"], line["had_worktree"], line["dirty"]) == (False, False, [])
    assert [(s.name, s.noop) for s in steps] == [
        ("Remove dev-a-hotfix", "no container dev-a-hotfix"),
        ("Remove the worktree /home/alice/hotfix/proj", "no worktree at /home/alice/hotfix/proj"),
    ]


def test_finish_of_a_sibling_without_labels_reads_the_home(
    workdir: Path, hotfix_lines: Lines
) -> None:
    hotfix_lines.send(finish())
    bare = sibling_of_dev_a(workdir, None, **{hf.BRANCH_LABEL: None, hf.REPO_LABEL: None})
    facts = hotfix_facts(workdir, CLEAN, **{"dev-a-hotfix": bare})
    hotfix_run(workdir, facts)
    # Nothing named: the home's one repository, no branch, no ref.
    assert [(r["repo"], r["branch"], r["worktree"], r["ref"]) for r in facts.reads(Hotfix)] == [
        ("", "", "", ""), ("proj", "", WORKTREE, ""),
    ]  # fmt: skip
    assert hotfix_lines.read()[0]["branch"] == ""


def test_finish_leaves_a_container_that_is_not_the_hotfix_of_it(
    workdir: Path, hotfix_lines: Lines
) -> None:
    hotfix_lines.send(finish(repo="proj", ref="v1.4"))
    impostor = sibling_of_dev_a(workdir, **{hf.OF_LABEL: "dev-b"})
    facts = hotfix_facts(workdir, CLEAN, **{"dev-a-hotfix": impostor})
    with pytest.raises(OperationError, match="dev-a-hotfix is not a hotfix of dev-a"):
        hotfix_run(workdir, facts)


# -- rollout -------------------------------------------------------------------------

ROLLOUT = "r-20261207-101500-1a2b"
NEW_IMAGE = "registry.test:5000/ml/tf@sha256:" + "d" * 64
ROLLOUT_LABELS = {layout.ROLLOUT_ID_LABEL: ROLLOUT, layout.ROLLOUT_FROM_LABEL: PINNED_A,
                  layout.ROLLOUT_TO_LABEL: NEW_IMAGE}  # fmt: skip
HOLDER = {"id": ROLLOUT, "owner": "ops@ctl", "started": "2026-12-07T10:15:00Z"}


@pytest.fixture
def rollout_lines(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Lines:
    return Lines(workdir, monkeypatch, ROLLOUT_STEP_ENV)


def rollout_step(phase: str, mine: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    return {"phase": phase, "container": "dev-a", "hosts": {HOST: mine or {}, "gpu9": {}}, **more}


def rollout_run(workdir: Path, facts: Facts, data: dict[str, Any] = DATA) -> Run:
    return Run(data, facts)(ro.rollout_step, spec_of(workdir, data))


def test_a_rollout_step_that_does_not_name_this_host_does_nothing(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send({"phase": "observe", "container": "dev-a", "hosts": {"gpu9": {}}})
    facts = converged_facts(spec_of(workdir))
    run = rollout_run(workdir, facts)
    assert (rollout_lines.read(), run.plan(), facts.asked) == ([], [], [])


def test_find_reads_the_rollout_labels_and_locks_without_exec(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("find"))
    labels = {**ROLLOUT_LABELS, "tfenv.managed": "true", "other": "x"}
    facts = converged_facts(spec_of(workdir), **{"dev-b": {"labels": labels}})
    locks = {layout.rollout_lock("dev-b"): json.dumps(HOLDER)}
    facts.answers[RolloutLocks] = locks
    run = rollout_run(workdir, facts)
    assert facts.reads(TfNode) == [{"exec_probes": False}]
    assert rollout_lines.read() == [
        {"host": HOST, "labels": {"dev-b": ROLLOUT_LABELS}, "locks": locks}
    ]
    assert run.plan() == []


@pytest.mark.parametrize("phase", ["lock", "unlock"])
def test_the_rollout_lock_is_taken_and_released_on_the_host(
    workdir: Path, rollout_lines: Lines, phase: str
) -> None:
    rollout_lines.send(rollout_step(phase, holder=HOLDER))
    run = rollout_run(workdir, Facts({}))
    path = "/var/lib/tfenv/rollouts/dev-a.lock"
    mine = f'\'"id": "{ROLLOUT}"\''
    text = "'" + json.dumps(HOLDER, sort_keys=True) + "'"
    expected = (
        f"install -d -m 0755 /var/lib/tfenv/rollouts && {{ ( set -C; printf '%s\\n' {text} > "
        f"{path} ) 2>/dev/null || grep -qF {mine} {path} || {{ echo TFENV-ROLLOUT-LOCK-HELD "
        f'"$(cat {path} )" >&2; exit 1; }}; }}'
        if phase == "lock"
        else f"! grep -qF {mine} {path} 2>/dev/null || rm -f {path}"
    )
    assert [s.as_plan() for s in run.plan()] == [{"op": "Rollout lock", "commands": [expected]}]
    assert rollout_lines.read() == []


def test_a_rollout_of_a_container_not_declared_here_is_an_error_line(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send({**rollout_step("replace", {"image": NEW_IMAGE}), "container": "dev-z"})
    run = rollout_run(workdir, converged_facts(spec_of(workdir)))
    assert rollout_lines.read() == [{"host": HOST, "error": "no container dev-z is declared here"}]
    assert run.plan() == []


def canary(**more: Any) -> dict[str, Any]:
    return {"state": "running healthy", "image": PINNED_A, "labels": {}, "health": {"sshd": "ok"},
            "log_lines": [], "metrics": None, "output": [], **more}  # fmt: skip


@pytest.mark.parametrize("phase", ["observe", "check"])
def test_observe_and_check_read_the_container_and_its_canary(
    workdir: Path, rollout_lines: Lines, phase: str
) -> None:
    rollout_lines.send(rollout_step(phase, {"node": True, "health": True, "metrics": True}))
    spec = spec_of(workdir)
    facts = converged_facts(spec, **{"dev-a": {"busy": [SSH_SESSION]}})
    facts.answers[CanaryCheck] = canary()
    run = rollout_run(workdir, facts)
    assert facts.reads(TfNode) == [{}]
    assert facts.reads(CanaryCheck) == [{
        "container": "dev-a", "health": True, "metrics": True, "checkpoints": "/checkpoints",
        "model": "/checkpoints/tfenv-canary/reference-model", "inferences": 500, "probe": (),
        "timeout": 180,
    }]  # fmt: skip
    assert rollout_lines.read() == [{
        "host": HOST, "check": canary(), "busy": [SSH_SESSION], "busy_checked": True,
        "declared": PINNED_A, "declared_image": TF_A, "declared_ref": TF_A,
        "lock": str(workdir / "images.lock.yaml"), "gpus": 2, "jupyter": True, "measures": True,
        "policy": "when-idle",
        "gates": {"p99_factor": 1.5, "p99_cpu_relative": False, "error_rate": 0.0,
                  "kl_divergence": 0.05, "gpu_memory_factor": 1.2},
    }]  # fmt: skip
    assert run.plan() == []


def test_a_check_without_the_node_or_metrics_reads_only_the_canary(
    workdir: Path, rollout_lines: Lines
) -> None:
    data = copy.deepcopy(DATA)
    data["containers"]["dev-b"]["gpus"] = "all"
    data["containers"]["dev-b"]["canary"] = {"inferences": 50, "probe": ["python3", "/p.py"],
                                             "health_timeout": 60,
                                             "gates": {"p99_factor": 3.0}}  # fmt: skip
    rollout_lines.send({**rollout_step("check", {"metrics": True}), "container": "dev-b"})
    facts = converged_facts(spec_of(workdir))
    facts.answers[CanaryCheck] = canary(image=PINNED_B)
    rollout_run(workdir, facts, data)
    assert facts.reads(TfNode) == []
    assert facts.reads(CanaryCheck) == [{
        "container": "dev-b", "health": False, "metrics": True, "checkpoints": None,
        "model": None, "inferences": 50, "probe": ("python3", "/p.py"), "timeout": 60,
    }]  # fmt: skip
    line = rollout_lines.read()[0]
    assert (line["busy"], line["busy_checked"], line["jupyter"], line["measures"]) == (
        [], False, False, True,
    )  # fmt: skip
    assert (line["declared"], line["policy"], line["gates"]["p99_factor"]) == (
        PINNED_B, "wait", 3.0,
    )  # fmt: skip
    assert line["gpus"] == 4  # "all" of the host's four


def test_a_check_of_a_container_without_metric_gates_does_not_measure(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send({**rollout_step("observe", {"metrics": True}), "container": "dev-b"})
    facts = converged_facts(spec_of(workdir))
    facts.answers[CanaryCheck] = canary()
    rollout_run(workdir, facts)
    assert facts.reads(CanaryCheck)[0]["metrics"] is False
    assert rollout_lines.read()[0]["measures"] is False


def test_a_check_reads_the_promoted_image_as_declared(workdir: Path, rollout_lines: Lines) -> None:
    lock = workdir / "images.lock.yaml"
    lock.write_text(
        lock.read_text() + f"promoted:\n  {TF_A}:\n    to: {TF_B}\n    rollout: {ROLLOUT}\n"
    )
    rollout_lines.send(rollout_step("check", {}))
    facts = converged_facts(spec_of(workdir))
    facts.answers[CanaryCheck] = canary()
    rollout_run(workdir, facts)
    line = rollout_lines.read()[0]
    assert (line["declared"], line["declared_image"], line["declared_ref"]) == (
        PINNED_B,
        TF_A,
        TF_B,
    )


def test_replace_runs_the_steps_image_with_its_rollout_labels(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("replace", {"image": NEW_IMAGE, "labels": ROLLOUT_LABELS}))
    facts = converged_facts(spec_of(workdir))
    steps = rollout_run(workdir, facts).plan()
    assert facts.reads(TfNode) == [{}]  # one read serves the files and the container
    assert names(steps) == [
        "Secret files and authorized keys of dev-a",
        f"Container dev-a ({NEW_IMAGE})",
        "Pending replacements",
    ]
    assert changed(steps) == [f"Container dev-a ({NEW_IMAGE})"]
    replace = step(steps, "Container dev-a").commands
    assert replace[-2].startswith("tfenv_i=0; until docker info") and NEW_IMAGE in replace[-2]
    assert (
        "--label tfenv.rollout.from=" + PINNED_A + " --label tfenv.rollout.id=" + ROLLOUT
        + " --label tfenv.rollout.to=" + NEW_IMAGE
    ) in replace[-1]  # fmt: skip
    assert replace[-1].count(" docker stop -t 30 dev-a ") == 1
    assert rollout_lines.read() == []


def test_replace_moves_a_container_a_rollout_already_moved(
    workdir: Path, rollout_lines: Lines
) -> None:
    # A rollback: the container runs the rollout's image; the step puts the old one back
    # (the deploy itself would leave the rollout's image alone).
    rollout_lines.send(rollout_step("replace", {"image": PINNED_A, "labels": {}}))
    spec = spec_of(workdir)
    moved = converged_facts(spec).answers[TfNode].containers["dev-a"]
    moved_options = {**moved.options, "image": NEW_IMAGE}
    facts = converged_facts(spec, **{"dev-a": {
        "labels": {**moved.labels, **ROLLOUT_LABELS}, "options": moved_options}})  # fmt: skip
    steps = rollout_run(workdir, facts).plan()
    assert changed(steps) == [f"Container dev-a ({PINNED_A})"]
    assert "tfenv.rollout" not in step(steps, "Container dev-a").commands[-1]


def test_a_check_without_an_image_lock_is_an_error_line(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("check", {}))
    facts = converged_facts(spec_of(workdir))
    facts.answers[CanaryCheck] = canary()
    no_lock = spec_of(workdir).model_copy(update={"image_lock": None})
    Run(DATA, facts)(ro.rollout_step, no_lock)
    assert rollout_lines.read() == [{"host": HOST, "error": "no image lock declared"}]


# -- driver rollout ------------------------------------------------------------------

OLD, NEW = "550.127.05", "550.144.03"
RECORD = {"id": ROLLOUT, "from": OLD, "to": NEW}
CONVERGED_LINE = {
    "driver_state": "ok", "driver_version": OLD, "module_version": OLD, "smi_error": None,
    "gpus": 4, "installed": f"{OLD}-1", "record": None,
}  # fmt: skip


def driver_facts(workdir: Path, *gpu: Any, **containers: Any) -> Facts:
    """The converged host (``containers``: changes), ``gpu`` the GpuHost fact's
    successive answers (default: the converged one)."""
    facts = converged_facts(spec_of(workdir), **containers)
    if gpu:
        facts.answers[GpuHost] = Reads(*gpu)
    return facts


def test_a_driver_step_on_a_host_without_a_driver_is_an_error_line(
    workdir: Path, rollout_lines: Lines
) -> None:
    data = {k: v for k, v in DATA.items() if k != "nvidia_driver"}
    rollout_lines.send(rollout_step("driver-move", {"version": NEW}))
    run = rollout_run(workdir, driver_facts(workdir), data)
    assert rollout_lines.read() == [{"host": HOST, "error": "no nvidia_driver is declared here"}]
    assert run.plan() == []


def test_driver_observe_reads_the_driver_and_the_running_containers(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("driver-observe", {}))
    with_record = dataclasses.replace(converged_gpu(), driver_rollout=RECORD)
    facts = driver_facts(workdir, with_record, **{"dev-b": {"running": False}})
    run = rollout_run(workdir, facts)
    assert rollout_lines.read() == [{
        "host": HOST, "driver": {**CONVERGED_LINE, "record": RECORD}, "declared": OLD,
        "running": ["dev-a"],
    }]  # fmt: skip
    assert run.plan() == []


def test_driver_observe_names_an_ubuntu_hosts_driver_package(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("driver-observe", {}))
    # No package named nvidia-driver: the first nvidia-driver-* installed one.
    packages = {"nvidia-driver-550-open": Package("550.127.05-0ubuntu1", True),
                "nvidia-driver-535": Package("535.1-0ubuntu1", False)}  # fmt: skip
    ubuntu = dataclasses.replace(converged_gpu(), packages=packages)
    assert dr._driver_line(ubuntu)["installed"] == "550.127.05-0ubuntu1"
    none = dataclasses.replace(
        converged_gpu(), packages={"nvidia-driver-535": packages["nvidia-driver-535"]}
    )
    assert dr._driver_line(none)["installed"] is None


def test_driver_observe_on_ubuntu_writes_the_installed_version(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("driver-observe", {}))
    packages = {"nvidia-driver-550-open": Package("550.127.05-0ubuntu1", True)}
    rollout_run(
        workdir, driver_facts(workdir, dataclasses.replace(converged_gpu(), packages=packages))
    )
    assert rollout_lines.read()[0]["driver"]["installed"] == "550.127.05-0ubuntu1"


def test_driver_check_reads_the_driver_and_each_containers_health(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("driver-check", {}))
    data = copy.deepcopy(DATA)
    data["containers"]["dev-b"]["gpus"] = "all"
    facts = driver_facts(workdir)
    facts.answers[CanaryCheck] = lambda container, **_: canary(image=container)
    run = rollout_run(workdir, facts, data)
    common = {"health": True, "metrics": False, "model": None, "timeout": 180}
    assert facts.reads(CanaryCheck) == [
        {"container": "dev-a", **common, "checkpoints": "/checkpoints"},
        {"container": "dev-b", **common, "checkpoints": None},
    ]
    assert facts.reads(TfNode) == []
    assert rollout_lines.read() == [{
        "host": HOST, "driver": CONVERGED_LINE, "gpu_count": 4, "containers": {
            "dev-a": {"check": canary(image="dev-a"), "gpus": 2, "jupyter": True},
            "dev-b": {"check": canary(image="dev-b"), "gpus": 4, "jupyter": False},
        },
    }]  # fmt: skip
    assert run.plan() == []


def forget_command(rollout: str = ROLLOUT) -> str:
    return (f"! grep -qF '\"id\": \"{rollout}\"' /var/lib/tfenv/rollouts/driver.json 2>/dev/null "
            "|| rm -f /var/lib/tfenv/rollouts/driver.json")  # fmt: skip


def test_driver_forget_removes_only_this_rollouts_record(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("driver-forget", {"forget": RECORD}))
    run = rollout_run(workdir, driver_facts(workdir))
    assert [s.as_plan() for s in run.plan()] == [
        {"op": "Driver rollout record", "commands": [forget_command()]}
    ]
    assert rollout_lines.read() == []


def record_command(record: dict[str, str]) -> str:
    text = json.dumps(record, sort_keys=True)
    return (f"install -d -m 0755 /var/lib/tfenv/rollouts && printf '%s\\n' '{text}' > "
            "/var/lib/tfenv/rollouts/driver.json")  # fmt: skip


def test_driver_move_stops_records_installs_reboots_and_starts_again(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("driver-move", {"version": NEW, "running": ["dev-a", "dev-b"],
                                                    "record": RECORD}))  # fmt: skip
    # Its CUDA list file gone: the move writes the declared repository's again.
    sources = {k: v for k, v in converged_gpu().apt_sources.items() if "cuda" not in k}
    facts = driver_facts(
        workdir,
        dataclasses.replace(converged_gpu(), apt_sources=sources),
        driver_moved(NEW, "mismatch", module=OLD),
        driver_moved(NEW),
        **{"dev-b": {"busy": [SSH_SESSION]}},
    )
    facts.answers[ContainerHealth] = healthy({"dev-a": 2, "dev-b": 2})
    run = rollout_run(workdir, facts)
    planned = run.plan()
    assert names(planned) == [
        "Containers idle for the driver's reboot",
        "dev-a idle before it stops",
        "dev-b idle before it stops",
        "Stop the containers cleanly",
        "Driver rollout record",
        f"NVIDIA driver {NEW} (open modules)",
        "Reboot for the NVIDIA driver (only when due)",
        "Start the containers again",
    ]
    # dev-b (replace: wait) is in use: the move waits for it, before anything changes.
    idle = step(planned, "Containers idle").commands
    assert len(idle) == 1 and "r=$(tfenv_busy dev-b 30 )" in idle[0] and "after 120 s" in idle[0]
    assert "; nothing was installed" in idle[0]
    before_a = step(planned, "dev-a idle before it stops").commands
    assert len(before_a) == 1 and before_a[0].endswith(
        'tfenv_gpu_apps; r=$(tfenv_busy dev-a 30 ); [ -z "$r" ] || { echo \'tfenv: dev-a came '
        "into use; the host is not rebooted (--data force_busy=true reboots it anyway); nothing "
        'was changed:\' "$r" >&2; exit 1; }'
    )
    assert "still in use after 120 s" in step(planned, "dev-b idle before it stops").commands[0]
    assert step(planned, "Stop the containers cleanly").commands == [
        "docker stop -t 30 dev-a >/dev/null 2>&1 || true",
        "docker stop -t 30 dev-b >/dev/null 2>&1 || true",
    ]
    assert step(planned, "Driver rollout record").commands == [record_command(RECORD)]
    install = step(planned, "NVIDIA driver 550").commands
    assert "https://mirror.test/cuda/debian12/x86_64/" in str(install)  # the declared repository
    assert f"nvidia-driver={NEW}-1" in install[-2]
    assert step(planned, "Start the containers again").commands == [
        "docker start dev-a >/dev/null 2>&1 || echo 'tfenv: dev-a did not start' >&2",
        "docker start dev-b >/dev/null 2>&1 || echo 'tfenv: dev-b did not start' >&2",
    ]
    executed = run.execute()
    # Stopped above, after their guard: the reboot itself guards nothing.
    assert step(executed, "Reboot for the NVIDIA driver").commands[0] == {
        "call": "remove_any_askpass_file"
    }
    assert rollout_lines.read() == []


def test_driver_move_on_a_host_already_on_the_target_does_not_reboot(
    workdir: Path, rollout_lines: Lines
) -> None:
    # resume after a kill: installed and loaded already; the record goes with the move.
    rollout_lines.send(rollout_step("driver-move", {"version": NEW, "running": ["dev-a"],
                                                    "forget": RECORD}))  # fmt: skip
    there = dataclasses.replace(driver_moved(NEW), driver_rollout=RECORD)
    there.apt_config = {path: text.replace(OLD, NEW) for path, text in there.apt_config.items()}
    facts = driver_facts(workdir, there)
    steps = rollout_run(workdir, facts).execute()
    assert names(steps) == [
        f"NVIDIA driver {NEW} (open modules)",
        "Reboot for the NVIDIA driver (only when due)",
        "Start the containers again",
        "Driver rollout record",
    ]
    assert changed(steps) == ["Start the containers again", "Driver rollout record"]
    assert step(steps, "Reboot").noop == "no reboot due"
    assert step(steps, "Driver rollout record").commands == [forget_command()]
    assert facts.reads(GpuHost) == [{}]  # nothing installed: not read again for the reboot


def test_driver_move_with_force_busy_notifies_instead_of_refusing(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("driver-move", {"version": NEW, "running": ["dev-a"]}))
    facts = driver_facts(workdir, **{"dev-a": {"busy": [SSH_SESSION]}})
    steps = Run({**DATA, "force_busy": "yes"}, facts)(ro.rollout_step, spec_of(workdir)).plan()
    assert step(steps, "Containers idle").noop == "no container in use"
    # Only dev-a ran before the move: dev-b (running now) is not stopped, nor guarded.
    assert "dev-b idle before it stops" not in names(steps)
    assert "restarts in" in step(steps, "dev-a idle before it stops").commands[0]
    assert step(steps, "Stop the containers cleanly").commands == [
        "docker stop -t 30 dev-a >/dev/null 2>&1 || true"
    ]
    assert "Driver rollout record" not in names(steps)


def test_driver_move_of_a_host_that_ran_no_container(workdir: Path, rollout_lines: Lines) -> None:
    rollout_lines.send(rollout_step("driver-move", {"version": NEW}))
    facts = driver_facts(workdir, **{"dev-a": {"running": False}, "dev-b": {"running": False}})
    steps = rollout_run(workdir, facts).plan()
    assert [(s.name, s.commands, s.noop) for s in steps if "NVIDIA driver 550" not in s.name] == [
        ("Containers idle for the driver's reboot", [], "no container in use"),
        ("Stop the containers cleanly", [], ""),
        ("Reboot for the NVIDIA driver (only when due)", [], "decided when the deploy runs"),
        ("Start the containers again", [], ""),
    ]


def test_driver_move_reboots_for_the_declared_module_flavour(
    workdir: Path, rollout_lines: Lines
) -> None:
    # The packages in place, the other flavour's module loaded: the move reboots; the
    # data's persistence_mode (off) is kept, GPUs without it included.
    data = copy.deepcopy(DATA)
    data["nvidia_driver"]["persistence_mode"] = False
    rollout_lines.send(rollout_step("driver-move", {"version": NEW, "running": []}))
    there = driver_moved(NEW)
    there.apt_config = {path: text.replace(OLD, NEW) for path, text in there.apt_config.items()}
    there.module_flavour = "proprietary"
    there.gpus = [dataclasses.replace(gpu, persistence=False) for gpu in there.gpus]
    facts = driver_facts(workdir, there)
    steps = rollout_run(workdir, facts, data).execute()
    assert step(steps, "NVIDIA driver 550").commands == []
    assert step(steps, "Containers idle").noop == "no container in use"
    assert step(steps, "Reboot").commands[2] == "( sleep 1 && reboot ) </dev/null >/dev/null 2>&1 &"


def test_driver_move_turns_persistence_mode_back_on(workdir: Path, rollout_lines: Lines) -> None:
    rollout_lines.send(rollout_step("driver-move", {"version": NEW, "running": []}))
    there = driver_moved(NEW)
    there.apt_config = {path: text.replace(OLD, NEW) for path, text in there.apt_config.items()}
    there.gpus = [dataclasses.replace(there.gpus[0], persistence=False), *there.gpus[1:]]
    steps = rollout_run(workdir, driver_facts(workdir, there)).plan()
    assert step(steps, "NVIDIA driver 550").commands == [
        "systemctl enable --now nvidia-persistenced"
    ]


def test_driver_move_under_a_busy_when_idle_container_changes_nothing(
    workdir: Path, rollout_lines: Lines
) -> None:
    rollout_lines.send(rollout_step("driver-move", {"version": NEW, "running": ["dev-a"]}))
    facts = driver_facts(workdir, **{"dev-a": {"busy": [SSH_SESSION]}})
    steps = rollout_run(workdir, facts).plan()
    assert step(steps, "Containers idle").commands == BUSY_REFUSAL


def test_driver_move_installs_the_declared_module_flavour(
    workdir: Path, rollout_lines: Lines
) -> None:
    data = copy.deepcopy(DATA)
    data["nvidia_driver"]["kernel_modules"] = "proprietary"
    rollout_lines.send(rollout_step("driver-move", {"version": NEW, "running": []}))
    steps = rollout_run(workdir, driver_facts(workdir), data).plan()
    install = step(steps, f"NVIDIA driver {NEW} (proprietary modules)").commands
    assert " nvidia-kernel-dkms=550.144.03-1 " in install[-2]
    assert "nvidia-kernel-open-dkms" not in install[-2]
