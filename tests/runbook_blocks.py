"""The fenced shell blocks of runbooks/*.md, for the tests that run or check them.

A block's info string says what it is:

- ```` ```sh runnable ````: run against the lab by tests/test_lab_runbooks.py,
  in order, with the runbook's variables set for the lab (``exit=0,2``: the
  exit codes that count as success; default 0);
- ```` ```sh setup ````: the variables a reader sets for their fleet (the lab
  test sets its own);
- ```` ```sh tested-by=tests/FILE.py ````: too slow to run here (reboots, a whole
  rollout); that test runs the same command, and tests/test_runbooks.py checks
  that it does and that the CLI takes every option the block uses;
- ```` ```sh ````: an illustration, not run.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNBOOKS = REPO / "runbooks"
# Fences may be indented (inside a list item): the code is dedented by the same.
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```sh(?P<info>[^\n]*)\n(?P<code>.*?)^(?P=indent)```$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    runbook: str
    line: int
    kind: str  # "runnable" | "setup" | "tested-by" | "illustration"
    code: str
    exits: tuple[int, ...] = (0,)
    tested_by: str = ""

    @property
    def where(self) -> str:
        return f"runbooks/{self.runbook}:{self.line}"


def listed() -> list[str]:
    """The runbooks runbooks/README.md links, in its order."""
    text = (RUNBOOKS / "README.md").read_text()
    return re.findall(r"\]\(([a-z0-9-]+\.md)\)", text)


def blocks(runbook: str) -> list[Block]:
    text = (RUNBOOKS / runbook).read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        words = match["info"].split()
        kind, exits, tested_by = "illustration", (0,), ""
        for word in words:
            if word == "runnable":
                kind = "runnable"
            elif word == "setup":
                kind = "setup"
            elif word.startswith("tested-by="):
                kind, tested_by = "tested-by", word.split("=", 1)[1]
            elif word.startswith("exit="):
                exits = tuple(int(code) for code in word.split("=", 1)[1].split(","))
            else:
                raise ValueError(f"runbooks/{runbook}:{line}: unknown block word {word!r}")
        code = textwrap.dedent(match["code"])
        found.append(Block(runbook, line, kind, code, exits, tested_by))
    return found


def tfenv_commands(code: str) -> list[list[str]]:
    """Every ``tfenv ...`` command line of a block, continuation lines joined, as
    words (variables and quotes left as they are written)."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
            words = part.split()
            if words and words[0] == "tfenv":
                commands.append(words)
    return commands
