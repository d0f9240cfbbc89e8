"""``tfenv hotfix start|finish HOST CONTAINER``: the team's hotfix practice, made safe.

A production bug arrives while a researcher has uncommitted experiments.
Instead of stash / checkout / stash pop, ``start`` makes a git worktree of
their repository at the production ref on a ``hotfix/REF`` branch, and a
sibling container ``CONTAINER-hotfix`` running the production image (the
lock's digest, or ``--image``) with the same user, keys, secrets, home and
checkpoints, on free host ports. ``finish`` removes the sibling and the
worktree and keeps the branch. Their own working tree, index, untracked
files and stash are never touched. The remote work is one pyinfra run of
``deploys/hotfix.py`` (see :mod:`tfenv.deploys.hotfix`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tfenv.deploys.hotfix import STEP_ENV
from tfenv.errors import TfenvError
from tfenv.images.reference import pinned_tag_problem
from tfenv.reconcile.check import host_error, host_failed, run_pyinfra

DEPLOY = "deploys/hotfix.py"
# A git ref as a user types it: no '..', no leading '-', no spaces or shell characters.
# (git's own rules too: no component starting with '.', none ending in '.lock').
REF_RE = re.compile(
    r"(?![-/])(?!.*\.\.)(?!.*//)(?!(.*/)?\.)(?!.*\.lock(/|$))[A-Za-z0-9._/-]{1,128}(?<![./])",
    re.ASCII,
)
# A repository directory under the home: plain path components, no '..'.
COMPONENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
REPO_RE = re.compile(rf"(?!.*(^|/)\.\.?(/|$)){COMPONENT}(/{COMPONENT})*", re.ASCII)


class HotfixError(TfenvError):
    """The hotfix could not be started or finished; the message says why."""


@dataclass(frozen=True)
class Request:
    inventory: str
    host: str
    container: str
    phase: str  # "start" | "finish"
    ref: str = ""
    image: str = ""
    repo: str = ""
    discard: bool = False


def check_request(request: Request, base: Path, inventory=None) -> list[str]:  # type: ignore[no-untyped-def]
    """What is wrong with ``request`` before any host is touched, one line each."""
    from tfenv.model.inventory import load_inventory, validate_hosts

    problems = []
    if request.phase == "start" and not REF_RE.fullmatch(request.ref):
        problems.append(
            f"--ref {request.ref!r}: expected a branch, tag or commit "
            "(letters, digits, ._/-; no '..', no leading '-')"
        )
    if request.repo and not REPO_RE.fullmatch(request.repo):
        problems.append(
            f"--repo {request.repo!r}: expected a directory under the home such as "
            "project or src/project (no '..', no leading '/')"
        )
    if request.image and pinned_tag_problem(request.image):
        problems.append(f"--image {request.image!r}: expected {pinned_tag_problem(request.image)}")
    if inventory is None:  # the CLI passes the one it loaded already
        inventory = load_inventory(request.inventory, base)
    hosts = [h for h in inventory if h.name == request.host]
    if not hosts:
        return [*problems, f"{request.host}: not a host of {request.inventory}"]
    specs, invalid = validate_hosts(hosts, base)
    if invalid:
        return [*problems, *(str(p) for p in invalid)]
    spec = specs[request.host]
    if request.container not in spec.containers:
        declared = ", ".join(sorted(spec.containers)) or "none"
        problems.append(
            f"{request.host}: no container {request.container!r} is declared (declared: {declared})"
        )
    pinnable = request.image and not pinned_tag_problem(request.image)
    if pinnable and spec.image_lock and spec.image_lock.resolve(request.image) is None:
        problems.append(
            f"--image {request.image}: not pinned in {spec.image_lock.path} "
            f"(run: tfenv lock {request.inventory})"
        )
    return problems


def run(request: Request, say: Callable[[str], None]) -> dict:
    """One pyinfra run of deploys/hotfix.py on the host; its result line."""
    step = {
        "phase": request.phase,
        "host": request.host,
        "container": request.container,
        "ref": request.ref,
        "image": request.image,
        "repo": request.repo,
        "discard": request.discard,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(step, handle)
    os.environ[STEP_ENV] = handle.name
    try:
        say(f"{request.phase} on {request.host} (one pyinfra run of {DEPLOY}) ...")
        done = run_pyinfra(request.inventory, DEPLOY, [request.host], dry=False, collect=True)
    finally:
        os.environ.pop(STEP_ENV, None)
        os.unlink(handle.name)
    mine = [
        ln
        for ln in done.lines
        if ln.get("host") == request.host and ("branch" in ln or "error" in ln)
    ]
    result = dict(mine[-1]) if mine else {}
    failures = [
        ln["failure"] for ln in done.lines if ln.get("host") == request.host and "failure" in ln
    ]
    if "error" in result:
        raise HotfixError(f"{request.host}: {result['error']}. Nothing was changed.")
    if done.rc != 0 or host_failed(done.output, request.host) or not result:
        why = "; ".join(failures) or host_error(done.output, request.host, done.rc)
        if not failures and f"[{request.host}]" not in why:  # pyinfra's own words, not a host's
            why = "pyinfra said:\n" + "\n".join(done.output.strip().splitlines()[-15:])
        raise HotfixError(f"{request.host}: the hotfix {request.phase} failed: {why}")
    result["said"] = [ln for ln in done.output.splitlines() if f"[{request.host}]" in ln]
    return result


def started_text(request: Request, result: dict, ssh_host: str) -> str:
    ports = {container: host for container, host in result["ports"]}
    ssh = ports.get(f"{result['ssh_port']}/tcp")
    jupyter = f"{result['jupyter_port']}/tcp" if result.get("jupyter_port") else None
    again = " (already started: nothing changed)" if result.get("existed") else ""
    origin = "it existed: continued" if result.get("branch_existed") else f"new, from {request.ref}"
    lines = [
        f"Hotfix of {request.container} on {request.host}{again}",
        f"  branch     {result['branch']} ({origin})",
        f"  worktree   {result['worktree']}  (in the container; ~/{result['repo']} is untouched)",
        f"  container  {result['sibling']}  running {result['image']}",
    ]
    if ssh:
        lines.append(
            f"  ssh        ssh -p {ssh} {result['user_name']}@{ssh_host}   "
            f"then: cd {result['worktree']}"
        )
    for container, host in sorted(ports.items()):
        if container == jupyter:
            lines.append(
                f"  jupyter    {container} on the host's {host} (through SSH: "
                f"ssh -L {host}:127.0.0.1:{host} ...)"
            )
        elif container != f"{result['ssh_port']}/tcp":
            lines.append(f"  port       {container} on the host's {host}")
    lines.append(
        f"When done: commit on {result['branch']}, push it, then "
        f"tfenv hotfix finish {request.host} {request.container}"
    )
    return "\n".join(lines)


def finished_text(request: Request, result: dict) -> str:
    if not result.get("had_sibling") and not result.get("had_worktree"):
        return f"No hotfix of {request.container} on {request.host}: nothing to do."
    dropped = (
        f"; {len(result.get('dirty', []))} uncommitted file(s) discarded"
        if result.get("dirty")
        else ""
    )
    return (
        f"Hotfix of {request.container} on {request.host} finished: {result['sibling']} and "
        f"{result['worktree']} removed{dropped}; branch {result['branch']} kept."
    )
