"""``tfenv hotfix`` without a host: the Hotfix fact (its command and its parsing),
the deploy's pure helpers and its two operations, the control side's checks and
texts, and the CLI's answer to bad input.

The fact's command is also run for real by ``sh`` against stand-ins for ``docker``
and ``git`` on PATH (shell scripts in the test's directory): no container is
started and no git command runs; what the stand-ins print is set per test.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GOOD_DATA
from pyinfra.api import OperationError
from test_container_drift import desired
from test_tf_container_commands import run

from tfenv import hotfix as hf
from tfenv.cli import main
from tfenv.containers.desired import Port
from tfenv.deploys.hotfix import (
    WORKTREE_ENV,
    branch_name,
    free_ports,
    hotfix_worktree,
    remove_sibling,
    sibling,
    sibling_name,
    worktree_path,
)
from tfenv.facts.hotfix import INSIDE, Hotfix, HotfixState, parse
from tfenv.facts.tf_node import ObservedContainer, TfNodeState
from tfenv.hotfix import REF_RE, REPO_RE, Request, check_request, finished_text, started_text
from tfenv.layout import (
    CONTAINER_LABEL,
    HOTFIX_BRANCH_LABEL,
    HOTFIX_OF_LABEL,
    HOTFIX_PORTS_LABEL,
    HOTFIX_REPO_LABEL,
    HOTFIX_WORKTREE_LABEL,
)

HOME = "/home/researcher"
WORKTREE = "/home/researcher/hotfix/proj"
FACT_ARGS = dict(
    container="dev", user="1000:1000", home=HOME, repo="proj", worktree=WORKTREE,
    branch="hotfix/v1.4", ref="v1.4",
)  # fmt: skip
NOT_READ = "the state inside the container could not be read (docker exec failed)"


# -- the fact: parsing -------------------------------------------------------------


def test_parse_a_running_container_with_everything_read() -> None:
    state = parse([
        "running true",
        "repo other",
        "repo my proj",
        "worktree hotfix/v1.4",
        "dirty  M train.py",
        "dirty ?? notes new.txt",
        "branch-exists",
        "ref-ok",
        "done",
        "listen 0100007F:1F90",
        "listen 00000000000000000000000000000000:08AE",
    ])  # fmt: skip
    assert state == HotfixState(
        running=True,
        error="",
        repos=["other", "my proj"],
        git=True,
        repo_found=True,
        worktree_branch="hotfix/v1.4",
        dirty=[" M train.py", "?? notes new.txt"],  # porcelain's status columns kept
        branch_exists=True,
        ref_ok=True,
        read_inside=True,
        listening={8080, 2222},
    )


def test_parse_a_running_container_without_a_worktree() -> None:
    state = parse(["running true", "repo proj", "done"])
    assert state == HotfixState(running=True, repos=["proj"], read_inside=True)
    assert state.worktree_branch is None
    assert (state.branch_exists, state.ref_ok, state.error) == (False, False, "")


def test_parse_a_stopped_container() -> None:
    state = parse(["running false", "listen 00000000:0016"])
    assert state == HotfixState(running=False, listening={22})
    assert state.error == ""  # not running: nothing inside was to be read


def test_parse_docker_inspect_failing() -> None:
    state = parse(["error Error: No such object: dev"])
    assert state.error == "Error: No such object: dev"
    assert state.running is False
    assert state.read_inside is False


def test_parse_git_fatal_lines_prefixed_error() -> None:
    state = parse([
        "running true",
        "repo proj",
        "worktree (detached)",
        "error fatal: not a git repository (or any parent up to mount point /)",
        "error fatal: a second one",
        "done",
    ])  # fmt: skip
    assert state.error == "fatal: not a git repository (or any parent up to mount point /)"
    assert state.worktree_branch == "(detached)"
    assert state.read_inside is True


def test_parse_no_git_and_no_repo() -> None:
    assert parse(["running true", "repo proj", "no-git", "done"]) == HotfixState(
        running=True, repos=["proj"], git=False, read_inside=True
    )
    assert parse(["running true", "no-repo", "done"]) == HotfixState(
        running=True, repo_found=False, read_inside=True
    )


def test_parse_running_without_the_done_sentinel_is_an_error() -> None:
    # docker exec failed (or was cut off): what was not read is never read as absent.
    state = parse(["running true", "repo proj", "listen 0100007F:1F90"])
    assert state.error == NOT_READ
    assert state.read_inside is False
    assert state.listening == {8080}


def test_parse_keeps_the_first_real_error_over_the_missing_sentinel() -> None:
    state = parse(["running true", "error Error response from daemon: container is paused"])
    assert state.error == "Error response from daemon: container is paused"


@pytest.mark.parametrize(
    ("line", "port"),
    [
        ("listen 0100007F:1F90", 8080),
        ("listen 00000000:0016", 22),
        ("listen 00000000000000000000000000000000:08AE", 2222),
        ("listen 0000000000000000FFFF00000100007F:FFFF", 65535),
        ("listen 0100007F:1f90", 8080),  # lower-case hex too
    ],
)
def test_parse_listening_ports_are_hex(line: str, port: int) -> None:
    assert parse([line]).listening == {port}


def test_parse_ignores_garbage() -> None:
    state = parse([
        "",
        "   ",
        "Warning: something on stderr",
        "listen",
        "listen 0100007F:ZZZZ",
        "listen not-an-address",
        "repository x",
        "done-ish",
        "running true",
        "done",
    ])  # fmt: skip
    assert state == HotfixState(running=True, read_inside=True)


def test_parse_a_bare_error_line_is_still_an_error() -> None:
    for lines in (["error"], ["error "]):
        state = parse(lines)
        assert state.error != ""


def test_the_fact_parses_through_parse() -> None:
    lines = ["running true", "repo proj", "done"]
    assert Hotfix.process(lines) == parse(lines)


# -- the fact: its command ---------------------------------------------------------


def syntax_ok(command: str) -> None:
    done = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


def exec_words(command: str) -> list[str]:
    """The words of the ``docker exec`` in ``command``, up to its ``2>&1``."""
    words = shlex.split(command)
    start = words.index("exec") + 1
    return words[start : words.index("2>&1", start)]


def test_the_command_for_plain_values() -> None:
    command = Hotfix().command(**FACT_ARGS)
    syntax_ok(command)
    assert command.startswith(
        "state=$(docker inspect -f '{{.State.Running}}' dev 2>&1) || "
        '{ echo "error $state" | head -n 1; exit 0; }; echo "running $state"; '
        'if [ "$state" = true ]; then docker exec -u 1000:1000 -w /home/researcher dev sh -c '
    )
    assert command.endswith(
        " sh proj /home/researcher/hotfix/proj hotfix/v1.4 v1.4 2>&1 | "
        "sed 's/^\\(fatal\\|Error\\)/error \\1/'; fi; cat /proc/net/tcp /proc/net/tcp6 "
        '2>/dev/null | awk \'$4 == "0A" {print "listen " $2}\''
    )
    assert exec_words(command) == [
        "-u", "1000:1000", "-w", HOME, "dev", "sh", "-c", INSIDE, "sh", "proj", WORKTREE,
        "hotfix/v1.4", "v1.4",
    ]  # fmt: skip


TRICKY = dict(
    container="dev'; rm -rf / #",
    user="1000:1000 x",
    home="/home/a b",
    repo="my 'proj' $(id)",
    worktree="/home/a b/hotfix/`id`",
    branch='hotfix/"quoted" branch',
    ref="v1.4; echo $HOME",
)  # fmt: skip


def test_every_value_is_one_shell_word() -> None:
    command = Hotfix().command(**TRICKY)
    syntax_ok(command)
    assert exec_words(command) == [
        "-u", TRICKY["user"], "-w", TRICKY["home"], TRICKY["container"], "sh", "-c", INSIDE,
        "sh", TRICKY["repo"], TRICKY["worktree"], TRICKY["branch"], TRICKY["ref"],
    ]  # fmt: skip
    inspect = shlex.split(command)[:6]
    assert inspect == [
        "state=$(docker", "inspect", "-f", "{{.State.Running}}", TRICKY["container"], "2>&1)",
    ]  # fmt: skip


def test_empty_values_stay_empty_words() -> None:
    # finish before the repository is known: repo, worktree and ref are empty
    command = Hotfix().command(**{**FACT_ARGS, "repo": "", "worktree": "", "ref": ""})
    syntax_ok(command)
    assert exec_words(command)[-5:] == ["sh", "", "", "hotfix/v1.4", ""]


# -- the fact's command run by sh, against docker and git stand-ins -----------------

FAKE_DOCKER = r"""#!/bin/sh
case "$1" in
inspect)
  case "$4" in
    gone) echo "Error: No such object: $4" >&2; exit 1 ;;
    stopped) echo false ;;
    *) echo true ;;
  esac ;;
exec)
  shift
  printf '%s\0' "$@" > "$FAKE_LOG"
  [ "$1" = -u ] && shift 2
  [ "$1" = -w ] && { cd "$2" || exit 126; shift 2; }
  shift
  exec "$@" ;;
*) echo "unexpected docker $*" >&2; exit 99 ;;
esac
"""
FAKE_GIT = r"""#!/bin/sh
[ "$1" = -C ] && shift 2
case "$1" in
  symbolic-ref) [ -n "$FAKE_WT_BRANCH" ] && echo "$FAKE_WT_BRANCH" ;;
  status)
    [ -z "$FAKE_FATAL" ] || { echo "fatal: $FAKE_FATAL" >&2; exit 128; }
    [ -z "$FAKE_DIRTY" ] || printf '%s\n' "$FAKE_DIRTY" ;;
  rev-parse)
    case "$4" in
      refs/heads/*) [ "$FAKE_BRANCH" = "${4#refs/heads/}" ] ;;
      *) [ "$FAKE_REF^{commit}" = "$4" ] ;;
    esac ;;
  *) echo "unexpected git $*" >&2; exit 99 ;;
esac
"""


@dataclasses.dataclass
class Ran:
    lines: list[str]  # without the host's listen lines (they are this machine's)
    state: HotfixState
    exec_args: list[str] | None  # what docker exec got, word by word


@pytest.fixture
def fake_host(tmp_path: Path) -> Callable[..., Ran]:
    """Run the fact's command with ``sh`` and the docker/git stand-ins first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("git", FAKE_GIT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "exec.log"

    def go(args: dict, **fake: str) -> Ran:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_")}
        env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_LOG=str(log), **fake)
        log.unlink(missing_ok=True)
        done = subprocess.run(
            ["sh", "-c", Hotfix().command(**args)], env=env, capture_output=True, text=True,
            timeout=20,
        )  # fmt: skip
        assert (done.returncode, done.stderr) == (0, "")
        lines = done.stdout.splitlines()
        exec_args = log.read_text().split("\0")[:-1] if log.exists() else None
        return Ran([ln for ln in lines if not ln.startswith("listen ")], parse(lines), exec_args)

    return go


def home_with(tmp_path: Path, *repos: str) -> Path:
    home = tmp_path / "home dir"
    home.mkdir()
    for repo in repos:
        (home / repo / ".git").mkdir(parents=True)
    (home / "not-a-repo").mkdir()
    return home


def test_run_everything_present(fake_host, tmp_path: Path) -> None:
    home = home_with(tmp_path, "proj", "other")
    (home / "hotfix" / "proj").mkdir(parents=True)
    args = {**FACT_ARGS, "home": str(home), "worktree": str(home / "hotfix" / "proj")}
    ran = fake_host(
        args, FAKE_WT_BRANCH="hotfix/v1.4", FAKE_DIRTY=" M a.py\n?? b c.py",
        FAKE_BRANCH="hotfix/v1.4", FAKE_REF="v1.4",
    )  # fmt: skip
    assert ran.lines == [
        "running true", "repo other", "repo proj", "worktree hotfix/v1.4", "dirty  M a.py",
        "dirty ?? b c.py", "branch-exists", "ref-ok", "done",
    ]  # fmt: skip
    assert ran.state.error == ""
    assert ran.state.dirty == [" M a.py", "?? b c.py"]
    assert all(isinstance(p, int) and 0 <= p <= 65535 for p in ran.state.listening)
    assert ran.exec_args == [
        "-u", "1000:1000", "-w", str(home), "dev", "sh", "-c", INSIDE, "sh", "proj",
        str(home / "hotfix" / "proj"), "hotfix/v1.4", "v1.4",
    ]  # fmt: skip


def test_run_a_new_hotfix(fake_host, tmp_path: Path) -> None:
    home = home_with(tmp_path, "proj")
    ran = fake_host({**FACT_ARGS, "home": str(home), "worktree": str(home / "hotfix/proj")},
                    FAKE_REF="v1.4")  # fmt: skip
    assert ran.lines == ["running true", "repo proj", "ref-ok", "done"]
    assert (ran.state.worktree_branch, ran.state.branch_exists, ran.state.ref_ok) == (
        None, False, True,
    )  # fmt: skip


def test_run_a_ref_that_does_not_resolve(fake_host, tmp_path: Path) -> None:
    home = home_with(tmp_path, "proj")
    ran = fake_host({**FACT_ARGS, "home": str(home), "worktree": str(home / "hotfix/proj")},
                    FAKE_REF="v9.9")  # fmt: skip
    assert ran.lines == ["running true", "repo proj", "done"]
    assert ran.state.ref_ok is False


def test_run_a_detached_worktree_whose_status_fails(fake_host, tmp_path: Path) -> None:
    home = home_with(tmp_path, "proj")
    (home / "hotfix" / "proj").mkdir(parents=True)
    ran = fake_host(
        {**FACT_ARGS, "home": str(home), "worktree": str(home / "hotfix/proj")},
        FAKE_FATAL="not a git repository", FAKE_REF="v1.4",
    )  # fmt: skip
    assert ran.lines == [
        "running true", "repo proj", "worktree (detached)",
        "error fatal: not a git repository", "ref-ok", "done",
    ]  # fmt: skip
    assert ran.state.error == "fatal: not a git repository"


def test_run_without_git(fake_host, tmp_path: Path) -> None:
    home = home_with(tmp_path, "proj")
    (tmp_path / "bin" / "git").unlink()
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for tool in ("sh", "sed", "head", "cat", "awk"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True)
        (bare / tool).symlink_to(found.stdout.strip())
    (bare / "docker").symlink_to(tmp_path / "bin" / "docker")
    env = {**os.environ, "PATH": str(bare), "FAKE_LOG": str(tmp_path / "log")}
    done = subprocess.run(
        ["sh", "-c", Hotfix().command(**{**FACT_ARGS, "home": str(home)})], env=env,
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    lines = [ln for ln in done.stdout.splitlines() if not ln.startswith("listen ")]
    assert lines == ["running true", "repo proj", "no-git", "done"]
    assert parse(lines).git is False


def test_run_a_repository_that_is_not_there(fake_host, tmp_path: Path) -> None:
    home = home_with(tmp_path, "proj")
    ran = fake_host({**FACT_ARGS, "home": str(home), "repo": "nope"})
    assert ran.lines == ["running true", "repo proj", "no-repo", "done"]
    assert ran.state.repo_found is False


def test_run_without_a_repository_named_lists_them(fake_host, tmp_path: Path) -> None:
    home = home_with(tmp_path, "b", "a")
    ran = fake_host({**FACT_ARGS, "home": str(home), "repo": "", "worktree": ""})
    assert ran.lines == ["running true", "repo a", "repo b", "done"]
    assert ran.state.repos == ["a", "b"]
    assert ran.state.error == ""


def test_run_a_repository_whose_git_dir_is_a_file(fake_host, tmp_path: Path) -> None:
    home = home_with(tmp_path)
    (home / "proj").mkdir()
    (home / "proj" / ".git").write_text("gitdir: /elsewhere/proj.git\n")
    listed = fake_host({**FACT_ARGS, "home": str(home), "repo": "", "worktree": ""})
    assert listed.state.repos == ["proj"]
    named = fake_host({**FACT_ARGS, "home": str(home)}, FAKE_REF="v1.4")
    assert named.state.repo_found is True


def test_run_a_stopped_container(fake_host, tmp_path: Path) -> None:
    ran = fake_host({**FACT_ARGS, "container": "stopped"})
    assert ran.lines == ["running false"]
    assert ran.exec_args is None  # nothing runs inside a stopped container
    assert (ran.state.running, ran.state.error) == (False, "")


def test_run_a_missing_container(fake_host, tmp_path: Path) -> None:
    ran = fake_host({**FACT_ARGS, "container": "gone"})
    assert ran.lines == ["error Error: No such object: gone"]
    assert ran.state.error == "Error: No such object: gone"
    assert ran.state.listening == set()  # the command stopped there


def test_run_exec_failing_is_an_error(fake_host, tmp_path: Path) -> None:
    ran = fake_host({**FACT_ARGS, "home": str(tmp_path / "no such home")})
    assert ran.lines[0] == "running true"
    assert "done" not in ran.lines
    assert ran.state.error == NOT_READ


def test_run_tricky_values_arrive_intact(fake_host, tmp_path: Path) -> None:
    home = tmp_path / "h o'me $(x) `y`"
    home.mkdir()
    args = {**TRICKY, "home": str(home)}
    ran = fake_host(args)
    assert ran.exec_args == [
        "-u", TRICKY["user"], "-w", str(home), TRICKY["container"], "sh", "-c", INSIDE, "sh",
        TRICKY["repo"], TRICKY["worktree"], TRICKY["branch"], TRICKY["ref"],
    ]  # fmt: skip
    assert ran.lines == ["running true", "no-repo", "done"]


# -- the deploy's pure helpers -----------------------------------------------------


def test_names_and_paths() -> None:
    assert sibling_name("dev") == "dev-hotfix"
    assert sibling_name("dev-a") == "dev-a-hotfix"
    assert worktree_path(HOME, "proj") == WORKTREE
    assert worktree_path("/home/alice", "src/project") == "/home/alice/hotfix/src/project"
    assert branch_name("v1.4") == "hotfix/v1.4"
    assert branch_name("main") == "hotfix/main"
    # Refs keep their slashes: release/2.17 and release-2.17 get branches of their own.
    assert branch_name("release/2.17") == "hotfix/release/2.17"
    assert branch_name("release-2.17") == "hotfix/release-2.17"
    assert branch_name("a/b/c") == "hotfix/a/b/c"
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert branch_name(commit) == "hotfix/" + commit


SSH = Port("2222/tcp", "0.0.0.0", "2222")
JUPYTER = Port("8888/tcp", "127.0.0.1", "8888")


def test_free_ports_takes_the_next_free_one_above_each() -> None:
    assert free_ports((SSH, JUPYTER), {2222, 8888}) == (
        Port("2222/tcp", "0.0.0.0", "2223"),
        Port("8888/tcp", "127.0.0.1", "8889"),
    )


def test_free_ports_skips_taken_ones() -> None:
    taken = {2222, 2223, 2224, 8889}
    assert free_ports((SSH, JUPYTER), taken) == (
        Port("2222/tcp", "0.0.0.0", "2225"),
        Port("8888/tcp", "127.0.0.1", "8890"),
    )
    assert taken == {2222, 2223, 2224, 8889}  # not changed


def test_free_ports_never_chooses_one_twice() -> None:
    ports = (Port("2222/tcp", "0.0.0.0", "2201"), Port("2223/tcp", "0.0.0.0", "2202"))
    assert free_ports(ports, {2201, 2202}) == (
        Port("2222/tcp", "0.0.0.0", "2203"),
        Port("2223/tcp", "0.0.0.0", "2204"),
    )


def test_free_ports_of_none() -> None:
    assert free_ports((), {1, 2, 3}) == ()


@pytest.mark.parametrize(
    ("host_port", "taken", "above"),
    [("65535", set(), "65535"), ("65534", {65535}, "65534"), ("65530", set(range(65531, 65536)),
                                                              "65530")],
)  # fmt: skip
def test_free_ports_above_65535_is_an_error(host_port: str, taken: set[int], above: str) -> None:
    with pytest.raises(OperationError) as info:
        free_ports((Port("2222/tcp", "0.0.0.0", host_port),), taken)
    assert str(info.value) == f"no free host port above {above}"


def test_free_ports_up_to_65535() -> None:
    assert free_ports((Port("2222/tcp", "0.0.0.0", "65534"),), set()) == (
        Port("2222/tcp", "0.0.0.0", "65535"),
    )


IMAGE = "registry.lab.test:5000/tfenv/tensorflow@sha256:" + "5" * 64


def test_sibling_is_the_original_with_another_name_image_ports_labels_env() -> None:
    original = desired(labels={"team": "vision"}, env={"EXPERIMENT": "lr-0.1"})
    ports = (Port("2222/tcp", "0.0.0.0", "2223"), Port("8888/tcp", "127.0.0.1", "8889"))
    twin = sibling(original, IMAGE, ports, "src/proj", "hotfix/v1.4", WORKTREE)
    assert twin.name == "dev-hotfix"
    assert twin.image == IMAGE
    assert twin.ports == ports
    assert twin.labels == (
        ("team", "vision"),
        (HOTFIX_BRANCH_LABEL, "hotfix/v1.4"),
        (HOTFIX_OF_LABEL, "dev"),
        (HOTFIX_PORTS_LABEL, "2223,8889"),
        (HOTFIX_REPO_LABEL, "src/proj"),
        (HOTFIX_WORKTREE_LABEL, WORKTREE),
    )
    assert twin.env == tuple(sorted([*original.env, (WORKTREE_ENV, WORKTREE)]))
    assert dict(twin.env)["EXPERIMENT"] == "lr-0.1"
    # everything else: the original's (user, keys, secrets, home, checkpoints, ...)
    assert twin.mounts == original.mounts
    assert (twin.user, twin.uid, twin.gid, twin.user_name) == ("1000:1000", 1000, 1000,
                                                              "researcher")  # fmt: skip
    assert twin.home_source == original.home_source
    assert twin.checkpoint_source == original.checkpoint_source == "/mnt/checkpoints/dev"
    assert twin.secrets_digest == original.secrets_digest
    assert dataclasses.replace(
        twin, name=original.name, image=original.image, ports=original.ports,
        labels=original.labels, env=original.env,
    ) == original  # fmt: skip
    assert twin.tfenv_labels[CONTAINER_LABEL] == "dev-hotfix"


def test_sibling_without_ports() -> None:
    twin = sibling(desired(ports=[]), IMAGE, (), "proj", "hotfix/main", WORKTREE)
    assert dict(twin.labels)[HOTFIX_PORTS_LABEL] == ""
    assert twin.ports == ()


# -- the operations ----------------------------------------------------------------

OP_ARGS = dict(
    container="dev", user="1000:1000", home=HOME, repo="proj", worktree=WORKTREE,
    branch="hotfix/v1.4", ref="v1.4",
)  # fmt: skip
GIT = "docker exec -u 1000:1000 -w /home/researcher dev git -C proj worktree "


def test_worktree_new_branch_from_the_ref() -> None:
    ran = run(hotfix_worktree, state=HotfixState(running=True, ref_ok=True), **OP_ARGS)
    assert ran.commands == [GIT + f"add -b hotfix/v1.4 {WORKTREE} v1.4"]
    assert ran.noop is None


def test_worktree_existing_branch_is_continued() -> None:
    state = HotfixState(running=True, branch_exists=True, ref_ok=True)
    ran = run(hotfix_worktree, state=state, **OP_ARGS)
    assert ran.commands == [GIT + f"add {WORKTREE} hotfix/v1.4"]


def test_worktree_already_on_the_branch_is_a_noop() -> None:
    state = HotfixState(running=True, worktree_branch="hotfix/v1.4", branch_exists=True)
    ran = run(hotfix_worktree, state=state, **OP_ARGS)
    assert ran.commands == []
    assert ran.noop == f"{WORKTREE} is checked out on hotfix/v1.4"


@pytest.mark.parametrize("other", ["hotfix/v1.3", "(detached)"])
def test_worktree_on_another_branch_is_refused(other: str) -> None:
    state = HotfixState(running=True, worktree_branch=other, branch_exists=True, ref_ok=True)
    with pytest.raises(OperationError) as info:
        run(hotfix_worktree, state=state, **OP_ARGS)
    assert str(info.value) == (
        f"{WORKTREE} exists on {other}, not hotfix/v1.4: finish that hotfix first "
        "(tfenv hotfix finish gpu1 dev)"
    )


def test_worktree_of_a_ref_that_is_not_found_is_refused() -> None:
    with pytest.raises(OperationError) as info:
        run(hotfix_worktree, state=HotfixState(running=True), **OP_ARGS)
    assert str(info.value) == "v1.4 is not a commit, branch or tag of ~/proj"


@pytest.mark.parametrize(
    ("discard", "command"),
    [(False, f"remove {WORKTREE}"), (True, f"remove --force {WORKTREE}")],
)
def test_worktree_removed(discard: bool, command: str) -> None:
    state = HotfixState(running=True, worktree_branch="hotfix/v1.4", dirty=[" M a.py"])
    ran = run(hotfix_worktree, state=state, present=False, discard=discard, **OP_ARGS)
    assert ran.commands == [GIT + command]


@pytest.mark.parametrize("discard", [False, True])
def test_worktree_absent_is_a_noop_to_remove(discard: bool) -> None:
    state = HotfixState(running=True, branch_exists=True, ref_ok=True)
    ran = run(hotfix_worktree, state=state, present=False, discard=discard, **OP_ARGS)
    assert ran.commands == []
    assert ran.noop == f"no worktree at {WORKTREE}"


def test_worktree_commands_quote_every_value() -> None:
    args = dict(
        container="dev x", user="1000:1000 y", home="/home/a b", repo="my proj",
        worktree="/home/a b/hotfix/my proj", branch="hotfix/it's", ref="v1 $(id)",
    )  # fmt: skip
    ran = run(hotfix_worktree, state=HotfixState(running=True, ref_ok=True), **args)
    assert [shlex.split(c) for c in ran.commands] == [[
        "docker", "exec", "-u", "1000:1000 y", "-w", "/home/a b", "dev x", "git", "-C",
        "my proj", "worktree", "add", "-b", "hotfix/it's", "/home/a b/hotfix/my proj",
        "v1 $(id)",
    ]]  # fmt: skip


def observed_twin(labels: dict[str, str]) -> ObservedContainer:
    return ObservedContainer(
        name="dev-hotfix", id="c0ffee", image_id="sha256:1", running=True, status="running",
        health="healthy", labels=labels,
    )  # fmt: skip


def test_remove_sibling_absent_is_a_noop() -> None:
    ran = run(remove_sibling, sibling="dev-hotfix", of="dev", observed=TfNodeState(docker="ok"))
    assert ran.commands == []
    assert ran.noop == "no container dev-hotfix"


def test_remove_sibling_labelled_as_the_hotfix() -> None:
    node = TfNodeState(docker="ok", containers={"dev-hotfix": observed_twin({
        HOTFIX_OF_LABEL: "dev", HOTFIX_BRANCH_LABEL: "hotfix/v1.4"})})  # fmt: skip
    ran = run(remove_sibling, sibling="dev-hotfix", of="dev", observed=node)
    assert ran.commands == [
        "docker rm -f dev-hotfix",
        "rmdir --ignore-fail-on-non-empty /var/lib/tfenv/containers/dev-hotfix/ssh-host-keys "
        "/var/lib/tfenv/containers/dev-hotfix 2>/dev/null || true",
    ]
    assert ran.noop is None


@pytest.mark.parametrize("labels", [{}, {HOTFIX_OF_LABEL: "dev-b"}, {HOTFIX_OF_LABEL: ""}])
def test_remove_sibling_never_removes_another_container(labels: dict[str, str]) -> None:
    node = TfNodeState(docker="ok", containers={"dev-hotfix": observed_twin(labels)})
    with pytest.raises(OperationError) as info:
        run(remove_sibling, sibling="dev-hotfix", of="dev", observed=node)
    assert str(info.value) == "dev-hotfix is not a hotfix of dev (its labels say otherwise): left"


# -- the control side: refs and repositories ------------------------------------------


@pytest.mark.parametrize(
    "ref",
    ["v1.4", "main", "release/2.17", "0123456789abcdef0123456789abcdef01234567", "a1b2c3d",
     "v2.17.0-rc1", "feature/x_y", "a" * 128],
)  # fmt: skip
def test_refs_accepted(ref: str) -> None:
    assert REF_RE.fullmatch(ref)


@pytest.mark.parametrize(
    "ref",
    ["", "-x", "--upload-pack=evil", "a..b", "..", "v1/", "v1.", "a//b", "v 1", " v1", "v1\n",
     "a;b", "$x", "$(id)", "`id`", "a'b", 'a"b', "véé", "\u21741", "a" * 129, "a~1", "a^", "a:b",
     "@{u}", "a\\b", "a*", ".hidden", "a/.b", "x.lock", "x.lock/y", "/abs"],
)  # fmt: skip
def test_refs_refused(ref: str) -> None:
    assert REF_RE.fullmatch(ref) is None


@pytest.mark.parametrize("repo", ["project", "src/project", "a_b-c.d", "_x", "a/b/c", "p.git"])
def test_repos_accepted(repo: str) -> None:
    assert REPO_RE.fullmatch(repo)


@pytest.mark.parametrize(
    "repo",
    ["", "..", ".", "/abs", "/", "a/../b", "a/..", "../a", "a/./b", ".git", "a/.git", "a/",
     "a//b", "-x", "a b", "a;b", "é", "~/x", "$HOME"],
)  # fmt: skip
def test_repos_refused(repo: str) -> None:
    assert REPO_RE.fullmatch(repo) is None


# -- the control side: texts -----------------------------------------------------------

START = Request("inventories/gpu.py", "gpu1", "dev", "start", ref="v1.4")
FINISH = Request("inventories/gpu.py", "gpu1", "dev", "finish")
PINNED = "registry.lab.test:5000/tfenv/tensorflow@sha256:" + "4" * 64


def started(**changes) -> dict:
    return {
        "host": "gpu1", "repo": "proj", "branch": "hotfix/v1.4", "worktree": WORKTREE,
        "sibling": "dev-hotfix", "image": PINNED, "ports": [["2222/tcp", "2223"],
        ["8888/tcp", "8889"]], "user_name": "researcher", "existed": False,
        "branch_existed": False, "ssh_port": 2222, "jupyter_port": 8888, **changes,
    }  # fmt: skip


def test_started_text_of_a_new_hotfix() -> None:
    assert started_text(START, started(), "10.0.0.7") == "\n".join([
        "Hotfix of dev on gpu1",
        "  branch     hotfix/v1.4 (new, from v1.4)",
        f"  worktree   {WORKTREE}  (in the container; ~/proj is untouched)",
        f"  container  dev-hotfix  running {PINNED}",
        f"  ssh        ssh -p 2223 researcher@10.0.0.7   then: cd {WORKTREE}",
        "  jupyter    8888/tcp on the host's 8889 (through SSH: ssh -L 8889:127.0.0.1:8889 ...)",
        "When done: commit on hotfix/v1.4, push it, then tfenv hotfix finish gpu1 dev",
    ])  # fmt: skip


def test_started_text_again_with_an_existing_branch() -> None:
    ports = [["8888/tcp", "8890"], ["6006/tcp", "6007"], ["2222/tcp", "2224"]]
    result = started(existed=True, branch_existed=True, ports=ports)
    assert started_text(START, result, "gpu1.lab") == "\n".join([
        "Hotfix of dev on gpu1 (already started: nothing changed)",
        "  branch     hotfix/v1.4 (it existed: continued)",
        f"  worktree   {WORKTREE}  (in the container; ~/proj is untouched)",
        f"  container  dev-hotfix  running {PINNED}",
        f"  ssh        ssh -p 2224 researcher@gpu1.lab   then: cd {WORKTREE}",
        "  port       6006/tcp on the host's 6007",
        "  jupyter    8888/tcp on the host's 8890 (through SSH: ssh -L 8890:127.0.0.1:8890 ...)",
        "When done: commit on hotfix/v1.4, push it, then tfenv hotfix finish gpu1 dev",
    ])  # fmt: skip


def test_started_text_without_an_ssh_port() -> None:
    text = started_text(START, started(ports=[]), "10.0.0.7")
    assert text.splitlines() == [
        "Hotfix of dev on gpu1",
        "  branch     hotfix/v1.4 (new, from v1.4)",
        f"  worktree   {WORKTREE}  (in the container; ~/proj is untouched)",
        f"  container  dev-hotfix  running {PINNED}",
        "When done: commit on hotfix/v1.4, push it, then tfenv hotfix finish gpu1 dev",
    ]


def finished(**changes) -> dict:
    return {
        "host": "gpu1", "repo": "proj", "branch": "hotfix/v1.4", "worktree": WORKTREE,
        "sibling": "dev-hotfix", "dirty": [], "had_sibling": True, "had_worktree": True,
        **changes,
    }  # fmt: skip


def test_finished_text() -> None:
    assert finished_text(FINISH, finished()) == (
        f"Hotfix of dev on gpu1 finished: dev-hotfix and {WORKTREE} removed; "
        "branch hotfix/v1.4 kept."
    )


def test_finished_text_with_dirty_files_discarded() -> None:
    result = finished(dirty=[" M a.py", "?? b.py"])
    assert finished_text(FINISH, result) == (
        f"Hotfix of dev on gpu1 finished: dev-hotfix and {WORKTREE} removed; "
        "2 uncommitted file(s) discarded; branch hotfix/v1.4 kept."
    )


@pytest.mark.parametrize(("sibling_there", "worktree_there"), [(True, False), (False, True)])
def test_finished_text_with_one_of_the_two(sibling_there: bool, worktree_there: bool) -> None:
    result = finished(had_sibling=sibling_there, had_worktree=worktree_there)
    assert finished_text(FINISH, result) == (
        f"Hotfix of dev on gpu1 finished: dev-hotfix and {WORKTREE} removed; "
        "branch hotfix/v1.4 kept."
    )


def test_finished_text_when_there_was_nothing() -> None:
    result = finished(had_sibling=False, had_worktree=False, dirty=["x"])
    assert finished_text(FINISH, result) == "No hotfix of dev on gpu1: nothing to do."


# -- the control side: checking a request against an inventory on disk ------------------


def write_fleet(root: Path, monkeypatch: pytest.MonkeyPatch, inventory: str) -> str:
    """GOOD_DATA as group data, an inventory (named ``inventory``: pyinfra caches an
    inventory's code by path) of gpu1 (valid), gpu2 (valid, its containers declared
    out of order, none of them for the GPUs) and broken (invalid); cwd ``root``."""
    (root / "group_data").mkdir()
    (root / "group_data" / "all.py").write_text("".join(
        f"{key} = {value!r}\n" for key, value in copy.deepcopy(GOOD_DATA).items()
        if not key.startswith("_")
    ))  # fmt: skip
    user = {"name": "bob", "uid": 2002, "gid": 2002}
    zeta = {"image": "registry.test:5000/ml/tf:2.18.0", "user": user}
    alpha = {"image": "registry.test:5000/ml/tf:2.17.0", "user": user}
    gpu2 = {"containers": {"zeta": zeta, "alpha": alpha}}
    (root / inventory).write_text(
        f'gpu = [("gpu1", {{"ssh_hostname": "10.0.0.7"}}), ("gpu2", {gpu2!r}), '
        '("broken", {"gpu_count": -1})]\n'
    )
    monkeypatch.chdir(root)
    return inventory


def test_a_good_request_has_no_problems(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-good.py")
    assert check_request(Request(inventory, "gpu1", "dev-a", "start", ref="v1.4"), workdir) == []
    assert check_request(
        Request(inventory, "gpu1", "dev-b", "start", ref="release/2.17", repo="src/proj",
                image="registry.test:5000/ml/tf:2.18.0"), workdir,
    ) == []  # fmt: skip
    assert check_request(Request(inventory, "gpu1", "dev-a", "finish"), workdir) == []


def test_an_unknown_host(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-unknown-host.py")
    request = Request(inventory, "gpu9", "dev-a", "start", ref="v1.4")
    assert check_request(request, workdir) == ["gpu9: not a host of inv-unknown-host.py"]


def test_an_invalid_host(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-invalid-host.py")
    request = Request(inventory, "broken", "dev-a", "start", ref="v1.4")
    assert check_request(request, workdir) == [
        "broken: gpu_count: expected greater than or equal to 0, got -1"
    ]


def test_a_container_not_declared(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-no-container.py")
    request = Request(inventory, "gpu1", "dev-c", "finish")
    assert check_request(request, workdir) == [
        "gpu1: no container 'dev-c' is declared (declared: dev-a, dev-b)"
    ]
    request = Request(inventory, "gpu2", "dev-a", "start", ref="v1.4")
    assert check_request(request, workdir) == [
        "gpu2: no container 'dev-a' is declared (declared: alpha, zeta)"
    ]
    assert check_request(Request(inventory, "gpu2", "zeta", "finish"), workdir) == []


REF_PROBLEM = (
    "--ref {!r}: expected a branch, tag or commit (letters, digits, ._/-; no '..', no leading '-')"
)
REPO_PROBLEM = (
    "--repo {!r}: expected a directory under the home such as project or src/project "
    "(no '..', no leading '/')"
)


@pytest.mark.parametrize("ref", ["", "-x", "a..b", "v1;id", "v1/"])
def test_a_bad_ref(workdir: Path, monkeypatch: pytest.MonkeyPatch, ref: str) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-bad-ref.py")
    request = Request(inventory, "gpu1", "dev-a", "start", ref=ref)
    assert check_request(request, workdir) == [REF_PROBLEM.format(ref)]


@pytest.mark.parametrize("repo", ["..", "/abs", "a/../b", ".git", "proj/"])
def test_a_bad_repo(workdir: Path, monkeypatch: pytest.MonkeyPatch, repo: str) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-bad-repo.py")
    for phase, ref in (("start", "v1.4"), ("finish", "")):
        request = Request(inventory, "gpu1", "dev-a", phase, ref=ref, repo=repo)
        assert check_request(request, workdir) == [REPO_PROBLEM.format(repo)]


def test_an_image_not_in_the_lock(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-not-locked.py")
    image = "registry.test:5000/ml/tf:2.19.0"
    request = Request(inventory, "gpu1", "dev-a", "start", ref="v1.4", image=image)
    assert check_request(request, workdir) == [
        f"--image {image}: not pinned in {workdir / 'images.lock.yaml'} "
        "(run: tfenv lock inv-not-locked.py)"
    ]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("registry.test:5000/ml/tf:latest",
         "a pinned version tag, not the floating tag 'latest'"),
        ("registry.test:5000/ml/tf",
         "an explicit tag such as name:2.17.0 (no tag means the floating 'latest')"),
        (f"registry.test:5000/ml/tf@sha256:{'a' * 64}",
         "a name:tag reference (the digest belongs in the lock's 'digest' field)"),
    ],
)  # fmt: skip
def test_an_image_that_is_not_pinned(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, image: str, expected: str
) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-floating.py")
    request = Request(inventory, "gpu1", "dev-a", "start", ref="v1.4", image=image)
    problems = check_request(request, workdir)
    assert problems[0] == f"--image {image!r}: expected {expected}"


def test_an_image_that_is_not_pinned_is_one_problem(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-floating-once.py")
    image = "registry.test:5000/ml/tf:latest"
    request = Request(inventory, "gpu1", "dev-a", "start", ref="v1.4", image=image)
    assert check_request(request, workdir) == [
        f"--image {image!r}: expected a pinned version tag, not the floating tag 'latest'"
    ]


def test_every_problem_at_once(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-all.py")
    request = Request(inventory, "gpu9", "dev-a", "start", ref="a..b", repo="/abs")
    assert check_request(request, workdir) == [
        REF_PROBLEM.format("a..b"),
        REPO_PROBLEM.format("/abs"),
        "gpu9: not a host of inv-all.py",
    ]


# -- the CLI's answer to bad input -----------------------------------------------------

FIX = "tfenv hotfix: fix the above; nothing was changed."


@pytest.fixture
def no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the CLI ever got as far as contacting a host."""

    def contacted(*args, **kwargs):
        raise AssertionError("a host was contacted")

    monkeypatch.setattr(hf, "run", contacted)


def refused(result, problems: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.splitlines() == problems
    assert "Traceback" not in result.output


def cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["hotfix", *args])


def test_cli_start_with_bad_input(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, no_host: None
) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-cli-start.py")
    result = cli("start", "gpu1", "dev-c", "--ref", "a..b", "--repo", "../x",
                 "--image", "registry.test:5000/ml/tf:2.19.0", "-i", inventory)  # fmt: skip
    lock = Path.cwd() / "images.lock.yaml"
    refused(result, [
        REF_PROBLEM.format("a..b"),
        REPO_PROBLEM.format("../x"),
        "gpu1: no container 'dev-c' is declared (declared: dev-a, dev-b)",
        f"--image registry.test:5000/ml/tf:2.19.0: not pinned in {lock} "
        "(run: tfenv lock inv-cli-start.py)",
        FIX,
    ])  # fmt: skip


def test_cli_start_with_a_leading_dash_ref(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, no_host: None
) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-cli-dash.py")
    result = cli("start", "gpu1", "dev-a", "--ref=--upload-pack=x", "-i", inventory)
    refused(result, [REF_PROBLEM.format("--upload-pack=x"), FIX])


def test_cli_finish_of_an_unknown_host(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, no_host: None
) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-cli-finish.py")
    result = cli("finish", "gpu9", "dev-a", "--discard", "-i", inventory)
    refused(result, ["gpu9: not a host of inv-cli-finish.py", FIX])


def test_cli_finish_with_a_bad_repo(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, no_host: None
) -> None:
    inventory = write_fleet(workdir, monkeypatch, "inv-cli-repo.py")
    result = cli("finish", "gpu1", "dev-a", "--repo", "/etc", "-i", inventory)
    refused(result, [REPO_PROBLEM.format("/etc"), FIX])


def test_cli_of_a_missing_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_host: None
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("start", "gpu1", "dev-a", "--ref", "v1.4", "-i", "nope.py")
    refused(result, [
        "inventory file nope.py not found; pass the path of a pyinfra inventory file such as "
        "inventories/gpu.py"
    ])  # fmt: skip


def test_cli_start_needs_a_ref(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("start", "gpu1", "dev-a", "-i", "nope.py")
    assert result.exit_code == 2
    assert "Missing option '--ref'" in result.stderr
    assert "Traceback" not in result.output
