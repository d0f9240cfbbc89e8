"""Every runbook, without a lab: listed, well formed, and every ``tfenv`` command in
it names a real subcommand with options the CLI takes. Blocks too slow for the
runbook lab test name the test that runs the same command; it must.
(The runnable blocks themselves run in tests/test_lab_runbooks.py.)"""

from __future__ import annotations

import subprocess

import click
import pytest
from runbook_blocks import REPO, RUNBOOKS, blocks, listed, tfenv_commands

from tfenv.cli import main

REQUIRED = {
    "driver-upgrade.md", "rollout.md", "add-host.md", "retire-host.md", "rotate-secret.md",
    "drift-report.md", "nfs-outage.md", "ssh-host-key-changed.md", "hotfix.md",
    "team-image.md",
}  # fmt: skip


def test_the_readme_lists_every_runbook_and_each_exists() -> None:
    names = listed()
    assert set(names) >= REQUIRED, REQUIRED - set(names)
    on_disk = {p.name for p in RUNBOOKS.glob("*.md")} - {"README.md"}
    assert on_disk == set(names), on_disk ^ set(names)


@pytest.mark.parametrize("runbook", sorted(REQUIRED))
def test_each_runbook_says_when_how_to_tell_and_how_to_back_out(runbook: str) -> None:
    text = (RUNBOOKS / runbook).read_text()
    assert "**When:**" in text, runbook
    assert "How to tell it worked" in text, runbook
    assert "Back out" in text or "back out" in text, runbook
    assert any(b.kind == "runnable" for b in blocks(runbook)), f"{runbook}: nothing runnable"


def _all_blocks():  # type: ignore[no-untyped-def]
    return [b for name in listed() for b in blocks(name)]


@pytest.mark.parametrize("block", _all_blocks(), ids=lambda b: b.where)
def test_every_block_is_valid_shell(block) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True)
    assert result.returncode == 0, f"{block.where}: {result.stderr}"


def _command(words: list[str]) -> tuple[click.Command, list[str]]:
    """The click command ``words`` (after ``tfenv``) names, and the words left."""
    command: click.Command = main
    rest = words[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        if sub is None:  # `tfenv reconcile INV` is `tfenv reconcile run INV`
            sub = command.get_command(click.Context(command), "run")
            if sub is None:
                break
            return sub, rest
        command, rest = sub, rest[1:]
    return command, rest


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])} | {"--help"}


@pytest.mark.parametrize("block", _all_blocks(), ids=lambda b: b.where)
def test_every_tfenv_command_exists_with_its_options(block) -> None:  # type: ignore[no-untyped-def]
    for words in tfenv_commands(block.code):
        command, rest = _command(words)
        assert not isinstance(command, click.Group) or command is not main, (block.where, words)
        flags = [w.split("=", 1)[0] for w in rest if w.startswith("-")]
        unknown = [flag for flag in flags if flag not in _options(command)]
        assert not unknown, f"{block.where}: {' '.join(words)}: no option {unknown}"


@pytest.mark.parametrize(
    "block", [b for b in _all_blocks() if b.kind == "tested-by"], ids=lambda b: b.where
)
def test_a_block_too_slow_to_run_here_is_run_by_the_test_it_names(block) -> None:  # type: ignore[no-untyped-def]
    test = REPO / block.tested_by
    assert test.is_file(), f"{block.where}: {block.tested_by} does not exist"
    source = test.read_text()
    for words in tfenv_commands(block.code):
        _, rest = _command(words)
        path = words[1 : len(words) - len(rest)]
        assert all(f'"{w}"' in source for w in path), (block.where, path, block.tested_by)
        for option in (w.split("=", 1)[0] for w in rest if w.startswith("--")):
            assert f'"{option}"' in source, f"{block.where}: {block.tested_by} never uses {option}"
