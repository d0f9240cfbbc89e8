"""``tfenv hotfix``'s remote side (``deploys/hotfix.py``): one host, one container.

``tfenv hotfix`` writes the step to a JSON file named by ``TFENV_HOTFIX_STEP``
and reads the result line back (:func:`tfenv.drift.write_line`).

- ``start``: a git worktree of the researcher's repository at the ref, on a
  ``hotfix/...`` branch, made inside the running container as its user (so
  git's own paths are the container's); then the sibling ``NAME-hotfix`` from
  the production image through the deploy's own container operation (same
  user, keys, secrets, home and checkpoints; free host ports) and its health.
- ``finish``: refused while the worktree has uncommitted files (unless
  ``discard``) or the sibling is in use; removes the sibling and the worktree
  and keeps the branch.

The researcher's own working tree, index, untracked files and stash are never
touched: git writes only the worktree and its branch.
"""

from __future__ import annotations

import dataclasses
import json
import os

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from tfenv import layout
from tfenv.containers.desired import DesiredContainer, Port
from tfenv.deploys.spec import pinned_image
from tfenv.deploys.tf_node import declared_container
from tfenv.drift import write_line
from tfenv.facts.hotfix import Hotfix, HotfixState
from tfenv.facts.tf_node import TfNodeState, tf_node
from tfenv.model.spec import NodeSpec
from tfenv.operations.container_health import HealthCheck, containers_health
from tfenv.operations.tf_container import pending_replacements, tf_container

STEP_ENV = "TFENV_HOTFIX_STEP"
SUFFIX = layout.HOTFIX_SUFFIX
OF_LABEL = layout.HOTFIX_OF_LABEL
BRANCH_LABEL = layout.HOTFIX_BRANCH_LABEL
WORKTREE_LABEL = layout.HOTFIX_WORKTREE_LABEL
REPO_LABEL = layout.HOTFIX_REPO_LABEL
PORTS_LABEL = layout.HOTFIX_PORTS_LABEL
WORKTREE_ENV = "TFENV_HOTFIX_WORKTREE"


def sibling_name(container: str) -> str:
    return container + SUFFIX


def worktree_path(home: str, repo: str) -> str:
    return f"{home}/hotfix/{repo}"


def branch_name(ref: str) -> str:
    return f"hotfix/{ref}"


def free_ports(ports: tuple[Port, ...], taken: set[int]) -> tuple[Port, ...]:
    """Each published port moved to the next host port above it that is free."""
    moved = []
    used = set(taken)
    for port in ports:
        number = int(port.host) + 1
        while number in used:
            number += 1
        if number > 65535:
            raise OperationError(f"no free host port above {port.host}")
        used.add(number)
        moved.append(dataclasses.replace(port, host=str(number)))
    return tuple(moved)


def sibling(
    desired: DesiredContainer, image: str, ports: tuple[Port, ...], repo: str, branch: str,
    worktree: str,
) -> DesiredContainer:  # fmt: skip
    """``desired`` as its hotfix sibling: the same user, keys, secrets, home and
    checkpoints; another name, the production image, other host ports."""
    labels = dict(desired.labels)
    labels.update({
        OF_LABEL: desired.name, BRANCH_LABEL: branch, WORKTREE_LABEL: worktree, REPO_LABEL: repo,
        PORTS_LABEL: ",".join(p.host for p in ports),
    })  # fmt: skip
    env = dict(desired.env)
    env[WORKTREE_ENV] = worktree
    return dataclasses.replace(
        desired, name=sibling_name(desired.name), image=image, ports=ports,
        labels=tuple(sorted(labels.items())), env=tuple(sorted(env.items())),
    )  # fmt: skip


def _git(container: str, user: str, home: str, *args: str) -> StringCommand:
    return StringCommand(
        "docker", "exec", "-u", QuoteString(user), "-w", QuoteString(home), QuoteString(container),
        "git", *(QuoteString(a) for a in args),
    )  # fmt: skip


@operation()
def hotfix_worktree(
    container: str, user: str, home: str, repo: str, worktree: str, branch: str, ref: str,
    state: HotfixState, present: bool = True, discard: bool = False,
):  # fmt: skip
    """
    A git worktree of ``repo`` at ``ref`` on ``branch``, made (or removed) inside
    ``container`` as its user.

    + container: the running container whose home holds the repository
    + user: ``UID:GID`` to run git as
    + home: the home directory inside the container
    + repo: the repository, relative to the home
    + worktree: where the worktree goes (absolute, inside the container)
    + branch: the hotfix branch (made from ``ref`` unless it exists: then continued)
    + ref: what a new branch starts from
    + state: the Hotfix fact, read before
    + present: make it, or remove it (the branch stays)
    + discard: remove it even with uncommitted files

    **Example:**

    .. code:: python

        hotfix_worktree(name="Worktree", container="dev", user="1000:1000", ...)
    """
    if present:
        if state.worktree_branch == branch:
            host.noop(f"{worktree} is checked out on {branch}")
            return
        if state.worktree_branch is not None:
            raise OperationError(
                f"{worktree} exists on {state.worktree_branch}, not {branch}: finish that "
                f"hotfix first (tfenv hotfix finish {host.name} {container})"
            )
        if state.branch_exists:
            yield _git(container, user, home, "-C", repo, "worktree", "add", worktree, branch)
        elif state.ref_ok:
            yield _git(container, user, home, "-C", repo, "worktree", "add", "-b", branch,
                       worktree, ref)  # fmt: skip
        else:
            raise OperationError(f"{ref} is not a commit, branch or tag of ~/{repo}")
        return
    if state.worktree_branch is None:
        host.noop(f"no worktree at {worktree}")
        return
    force = ("--force",) if discard else ()
    yield _git(container, user, home, "-C", repo, "worktree", "remove", *force, worktree)


@operation()
def remove_sibling(sibling: str, of: str, observed: TfNodeState):
    """
    Remove the hotfix sibling ``sibling`` of container ``of`` (only a container whose
    label says it is one).

    + sibling: the sibling's name
    + of: the container it is a hotfix of
    + observed: the host's TfNodeState

    **Example:**

    .. code:: python

        remove_sibling(name="Remove dev-hotfix", sibling="dev-hotfix", of="dev", observed=node)
    """
    current = observed.containers.get(sibling)
    if current is None:
        host.noop(f"no container {sibling}")
        return
    if current.labels.get(OF_LABEL) != of:
        raise OperationError(f"{sibling} is not a hotfix of {of} (its labels say otherwise): left")
    yield StringCommand("docker", "rm", "-f", QuoteString(sibling))
    # The directory tfenv's container operation made for it (it used the original's keys).
    keys = layout.host_keys_dir(sibling)
    parent = keys.rsplit("/", 1)[0]
    yield StringCommand("rmdir", "--ignore-fail-on-non-empty", QuoteString(keys),
                        QuoteString(parent), "2>/dev/null", "||", "true")  # fmt: skip


def load_step() -> dict:
    with open(os.environ[STEP_ENV], encoding="utf-8") as handle:
        return json.load(handle)


def hotfix_step(spec: NodeSpec) -> None:
    step = load_step()
    if host.name != step["host"]:
        return
    name = step["container"]
    container = spec.containers.get(name)
    if container is None:
        write_line({"host": host.name, "error": f"no container {name} is declared on {host.name}"})
        return
    user = f"{container.user.uid}:{container.user.gid}"
    home = f"/home/{container.user.name}"
    repo = step.get("repo") or ""
    branch = branch_name(step["ref"]) if step.get("ref") else step.get("branch", "")
    node = tf_node(host)
    twin = node.containers.get(sibling_name(name))
    if twin is not None and not repo:  # finish: the sibling says what it was started with
        branch = twin.labels.get(BRANCH_LABEL, branch)
        repo = twin.labels.get(REPO_LABEL, "")
    state = host.get_fact(Hotfix, container=name, user=user, home=home, repo=repo,
                          worktree=worktree_path(home, repo) if repo else "", branch=branch,
                          ref=step.get("ref") or "")  # fmt: skip
    problem = _problem(state, name, repo)
    if problem is None and not repo:
        problem = _which_repo(state)
        if problem is None:
            repo = state.repos[0]
            state = host.get_fact(Hotfix, container=name, user=user, home=home, repo=repo,
                                  worktree=worktree_path(home, repo), branch=branch,
                                  ref=step.get("ref") or "")  # fmt: skip
            problem = _problem(state, name, repo)
    if problem:
        write_line({"host": host.name, "error": problem})
        return
    worktree = worktree_path(home, repo)
    result = {"host": host.name, "repo": repo, "branch": branch, "worktree": worktree,
              "sibling": sibling_name(name)}  # fmt: skip
    common = dict(container=name, user=user, home=home, repo=repo, worktree=worktree,
                  branch=branch, ref=step.get("ref") or "", state=state)  # fmt: skip
    if step["phase"] == "finish":
        if state.dirty and not step.get("discard"):
            write_line({**result, "error": "uncommitted files in the hotfix worktree "
                        f"{worktree}: " + "; ".join(state.dirty[:10]) + ". Commit them, or "
                        "finish with --discard to drop them"})  # fmt: skip
            return
        if twin is not None and twin.busy and not step.get("discard"):
            write_line({**result, "error": f"{twin.name} is in use ({'; '.join(twin.busy)}): "
                        "close those sessions, or finish with --discard"})  # fmt: skip
            return
        write_line({**result, "dirty": state.dirty, "had_sibling": twin is not None,
                    "had_worktree": state.worktree_branch is not None})  # fmt: skip
        remove_sibling(name=f"Remove {sibling_name(name)}", sibling=sibling_name(name), of=name,
                       observed=node)  # fmt: skip
        hotfix_worktree(name=f"Remove the worktree {worktree}", present=False,
                        discard=bool(step.get("discard")), **common)  # fmt: skip
        return
    image = pinned_image(spec, step.get("image") or container.image)
    desired = declared_container(spec, name, container, node)
    kept = twin.labels.get(PORTS_LABEL, "").split(",") if twin is not None else []
    if len(kept) == len(desired.ports) and all(p.isdigit() for p in kept):  # run again: same
        ports = tuple(
            dataclasses.replace(p, host=h) for p, h in zip(desired.ports, kept, strict=True)
        )
    else:
        taken = state.listening | {int(p.host) for p in desired.ports}
        for other in spec.containers.values():
            taken |= {p.host for p in other.ports}
        ports = free_ports(desired.ports, taken)
    twin_desired = sibling(desired, image, ports, repo, branch, worktree)
    write_line({**result, "image": image, "ports": [[p.container, p.host] for p in ports],
                "user_name": container.user.name, "existed": twin is not None,
                "ssh_port": container.ssh_port,
                "jupyter_port": container.jupyter.port if container.jupyter else None,
                "branch_existed": state.branch_exists})  # fmt: skip
    hotfix_worktree(name=f"Worktree {worktree} on {branch}", **common)
    tf_container(name=f"Container {twin_desired.name} ({image})", desired=twin_desired,
                 observed=node)  # fmt: skip
    pending_replacements(name="Pending replacements")
    check = HealthCheck(twin_desired.name, container.gpus.visible(spec.gpu_count),
                        container.jupyter is not None)  # fmt: skip
    containers_health(name=f"Health of {twin_desired.name}", checks=[check])


def _problem(state: HotfixState, name: str, repo: str) -> str | None:
    if state.error:
        return f"could not read {name}: {state.error}"
    if not state.running:
        return f"{name} is not running: the worktree is made inside it (start it first)"
    if not state.git:
        return f"git is not installed in {name}'s image"
    if repo and not state.repo_found:
        return f"~/{repo} is not a git repository in {name}"
    return None


def _which_repo(state: HotfixState) -> str | None:
    if len(state.repos) == 1:
        return None
    if not state.repos:
        return "no git repository at the top of the home directory: name one with --repo"
    return f"several repositories ({', '.join(state.repos)}): name one with --repo"
