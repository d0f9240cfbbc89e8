"""What ``tfenv hotfix`` needs to know about one container, in one command.

On the host (with sudo): whether the container runs; inside it, as its user
and from its home, the git repositories at the home's top level, the hotfix
worktree (its branch and uncommitted files), whether the hotfix branch
exists and whether the ref resolves; and the host's listening TCP ports (so
the sibling container gets free ones). Parsing is pure (:func:`parse`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from pyinfra.api import FactBase

# Run inside the container as its user: $1 repo, $2 worktree, $3 branch, $4 ref.
INSIDE = r"""
trap 'echo done' EXIT
for d in */.git; do [ -e "$d" ] && echo "repo ${d%/.git}"; done
command -v git >/dev/null || { echo "no-git"; exit 0; }
[ -n "$1" ] || exit 0
[ -e "$1/.git" ] || { echo "no-repo"; exit 0; }
if [ -e "$2" ]; then
  echo "worktree $(git -C "$2" symbolic-ref -q --short HEAD || echo '(detached)')"
  git -C "$2" status --porcelain --untracked-files=all | head -n 20 | sed 's/^/dirty /'
fi
git -C "$1" rev-parse --verify -q "refs/heads/$3" >/dev/null && echo "branch-exists"
if [ -n "$4" ] && git -C "$1" rev-parse --verify -q "$4^{commit}" >/dev/null; then echo "ref-ok"; fi
"""


@dataclass
class HotfixState:
    running: bool = False
    error: str = ""  # what could not be read (never read as "absent")
    repos: list[str] = field(default_factory=list)
    git: bool = True
    repo_found: bool = True
    worktree_branch: str | None = None  # None: no worktree
    dirty: list[str] = field(default_factory=list)
    branch_exists: bool = False
    ref_ok: bool = False
    read_inside: bool = False  # the script inside the container ran to its end
    listening: set[int] = field(default_factory=set)


class Hotfix(FactBase):
    """A container's hotfix state (see the module). Run it with sudo."""

    def command(  # type: ignore[override]
        self, container: str, user: str, home: str, repo: str, worktree: str, branch: str,
        ref: str,
    ) -> str:  # fmt: skip
        q = shlex.quote
        inside = " ".join(q(a) for a in (INSIDE, "sh", repo, worktree, branch, ref))
        return (
            f"state=$(docker inspect -f '{{{{.State.Running}}}}' {q(container)} 2>&1)"
            ' || { echo "error $state" | head -n 1; exit 0; }; '
            'echo "running $state"; '
            f'if [ "$state" = true ]; then docker exec -u {q(user)} -w {q(home)} {q(container)} '
            f"sh -c {inside} 2>&1 | sed 's/^\\(fatal\\|Error\\)/error \\1/'; fi; "
            'cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk \'$4 == "0A" {print "listen " $2}\''
        )

    @staticmethod
    def process(output: list[str]) -> HotfixState:  # type: ignore[override]
        return parse(output)


def parse(lines: list[str]) -> HotfixState:
    state = HotfixState()
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "error":
            state.error = state.error or rest.strip() or "an error without a message"
        elif kind == "running":
            state.running = rest.strip() == "true"
        elif kind == "repo":
            state.repos.append(rest)
        elif kind == "no-git":
            state.git = False
        elif kind == "no-repo":
            state.repo_found = False
        elif kind == "worktree":
            state.worktree_branch = rest
        elif kind == "dirty":
            state.dirty.append(rest)
        elif kind == "branch-exists":
            state.branch_exists = True
        elif kind == "ref-ok":
            state.ref_ok = True
        elif kind == "done":
            state.read_inside = True
        elif kind == "listen":
            port = rest.rsplit(":", 1)[-1]
            try:
                state.listening.add(int(port, 16))
            except ValueError:
                continue
    if state.running and not state.read_inside and not state.error:
        state.error = "the state inside the container could not be read (docker exec failed)"
    return state
