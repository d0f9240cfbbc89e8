"""tfenv reconcile: exit codes of a fleet that only needs a person, --apply's batches
(real pyinfra runs against hosts that refuse the connection), the last shard of
--shard, and the HTML report's escaping of an item's command."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfenv.model.reconcile_timer import load_timer
from tfenv.pyinfra_hooks import _shard_and_gate
from tfenv.reconcile.check import Started, apply_hosts, parse_shard, shard_of
from tfenv.reconcile.html import render_html
from tfenv.reconcile.prom import render_prom
from tfenv.reconcile.report import EXIT_CLEAN, EXIT_DRIFT, HostResult, Item, Report, merge
from tfenv.reconcile.run import Run, _in_use, reconcile, summary

DRIFT = Item("containers", "dev.restart", "unless-stopped", "no")
PERSON = Item("undeclared", "stray", "absent (not declared)", "running", "person", "docker rm -f")
ROLLOUT = Item("containers", "dev.image", "a", "b", "rollout", "tfenv rollout status r-1")


def report(**hosts: HostResult) -> Report:
    return Report(inventory="inv.py", started="2026-11-27T02:30:00Z",
                  finished="2026-11-27T02:31:00Z", hosts=hosts)  # fmt: skip


# --- 4. a fleet whose only problems need a person ------------------------------------


def test_a_fleet_whose_only_problem_needs_a_person_exits_2_not_0() -> None:
    only_person = report(a=HostResult("a", True), b=HostResult("b", True, items=[PERSON]))
    assert only_person.hosts["b"].status == "needs-a-person"
    assert only_person.exit_code == EXIT_DRIFT == 2
    assert only_person.to_json()["exit_code"] == 2
    assert summary(only_person).endswith("exit 2")
    assert only_person.totals["needs_a_person"] == 1 and only_person.totals["items"] == 1
    # A container change held off because it is in use is a person's too.
    held = report(c=HostResult("c", True, items=[_in_use(DRIFT)]))
    assert held.hosts["c"].items[0].action == "person"
    assert held.exit_code == 2


def test_merged_shards_that_only_need_a_person_exit_2() -> None:
    one = report(a=HostResult("a", True))
    two = report(b=HostResult("b", True, items=[PERSON]))
    one.shard, two.shard = "1/2", "2/2"
    assert merge([one, two]).exit_code == 2


def test_person_items_are_reported_as_exit_2_in_html_and_prom() -> None:
    only_person = report(b=HostResult("b", True, items=[PERSON]))
    assert "Exit code 2" in render_html(only_person)
    assert "tfenv_reconcile_last_run_exit_code 2" in render_prom(only_person)


def test_only_rollout_items_or_nothing_exit_0() -> None:
    assert report(a=HostResult("a", True)).exit_code == EXIT_CLEAN
    assert report(a=HostResult("a", True, items=[ROLLOUT])).exit_code == EXIT_CLEAN
    assert report(a=HostResult("a", True, items=[ROLLOUT, PERSON])).exit_code == 2


# --- 5. --apply's batches: every host in exactly one pyinfra run -----------------------

DEPLOY = 'from pyinfra.operations import server\nserver.shell(name="t", commands=["true"])\n'


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A TCP port bound on 127.0.0.1 but not listening: every connection is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def unreachable_fleet(directory: Path, names: list[str], port: int) -> tuple[str, str]:
    """An inventory of ``names`` (all at a refusing port) and a deploy, in ``directory``."""
    inventory = directory / "inventory.py"
    hosts = ", ".join(
        f'("{n}", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}}})' for n in names
    )
    inventory.write_text(f"hosts = [{hosts}]\n")
    deploy = directory / "deploy.py"
    deploy.write_text(DEPLOY)
    return str(inventory), str(deploy)


@pytest.mark.parametrize(
    ("count", "batch", "groups"),
    [
        (3, 1, [["h1"], ["h2"], ["h3"]]),
        (3, 2, [["h1", "h2"], ["h3"]]),
        (5, 2, [["h1", "h2"], ["h3", "h4"], ["h5"]]),
        (2, 5, [["h1", "h2"]]),
    ],
)
def test_apply_runs_every_host_including_the_last_in_its_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusing_port: int, count: int,
    batch: int, groups: list[list[str]],
) -> None:  # fmt: skip
    names = [f"h{i}" for i in range(1, count + 1)]
    inventory, deploy = unreachable_fleet(tmp_path, names, refusing_port)
    monkeypatch.chdir(tmp_path)  # no config.py here: plain pyinfra runs
    said: list[str] = []

    outcome, output = apply_hosts(inventory, deploy, names, batch, say=said.append)

    # Each host was in a pyinfra run: pyinfra itself tried to connect to it.
    assert sorted(outcome) == names
    for name in names:
        assert f"[{name}] Could not connect" in output, name
        assert outcome[name].startswith("failed: Could not connect"), outcome[name]
    started = [line for line in said if line.startswith("applying batch")]
    assert started == [
        f"applying batch {n}/{len(groups)}: {', '.join(group)}" for n, group in enumerate(groups, 1)
    ]


# --- 6. --shard K/N: the last shard is a shard ---------------------------------------


@pytest.mark.parametrize("text", ["1/1", "3/3", "2/3", "12/12"])
def test_every_shard_up_to_the_last_is_accepted(text: str) -> None:
    k, _, n = text.partition("/")
    assert parse_shard(text) == (int(k), int(n))


def test_the_three_shards_of_3_partition_the_fleet_and_3_3_selects_its_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    fleet = [Named(f"gpu-{i:03d}") for i in range(60)]
    init = _shard_and_gate(lambda inventory, config, initial_limit=None: initial_limit)
    picked = {}
    for k in (1, 2, 3):
        monkeypatch.setenv("TFENV_RECONCILE_SHARD", f"{k}/3")
        picked[k] = [h.name for h in init(fleet, None)]
    assert picked[3] == [h.name for h in fleet if shard_of(h.name, 3) == 3]
    assert picked[3]  # the last shard is not empty on a fleet of 60
    assert sorted(n for names in picked.values() for n in names) == [h.name for h in fleet]


def test_a_timer_on_the_last_shard_is_accepted() -> None:
    spec = load_timer("ctl", {"inventory": "inventories/gpu.py", "workdir": "/opt/fleet",
                              "shard": "3/3"})  # fmt: skip
    assert spec.shard == "3/3"


# --- 7. report.html escapes an item's command ------------------------------------------


def test_an_items_command_is_escaped_in_the_html_report() -> None:
    command = "docker rm -f '<b>dev</b>' && echo \"<script>alert(1)</script>\""
    item = Item("undeclared", "stray", "absent (not declared)", "running", "person", command)
    page = render_html(report(a=HostResult("a", True, items=[item])))
    assert command not in page
    assert "<b>dev</b>" not in page
    assert page.count("<script>") == 1  # the page's own
    escaped = (
        "docker rm -f &#x27;&lt;b&gt;dev&lt;/b&gt;&#x27; &amp;&amp; echo "
        "&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"
    )
    assert f"<td><code>{escaped}</code></td>" in page


# A stand-in for the gated check run (the CLI's ``first``): a process that writes what
# tfenv's collector would have written for each host, as the pyinfra --dry run does.
FIRST_CHECK = r"""
import json, os
lines = [
    {"host": "h1", "items": [{"area": "containers", "field": "dev.restart",
                              "declared": "unless-stopped", "observed": "no"}]},
    {"host": "h2", "items": [{"area": "undeclared", "field": "stray", "declared": "absent",
                              "observed": "running", "action": "person", "command": "rm"}]},
    {"host": "h3", "items": [{"area": "nfs", "field": "ckpt.options", "declared": "hard",
                              "observed": "soft"}]},
    {"host": "h4", "items": []},
]
with open(os.environ["TFENV_RECONCILE_OUT"], "a") as out:
    for line in lines:
        out.write(json.dumps(line) + "\n")
"""


@pytest.mark.parametrize("batch", [1, 2])
def test_reconcile_apply_applies_every_fixable_host_including_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusing_port: int, batch: int
) -> None:
    names = ["h1", "h2", "h3", "h4"]
    inventory, deploy = unreachable_fleet(tmp_path, names, refusing_port)
    monkeypatch.chdir(tmp_path)
    first = Started([sys.executable, "-c", FIRST_CHECK], None, gated=False, collect=True)
    checked: list[Report] = []

    got = reconcile(Run(inventory, deploy, apply=True, batch=batch), names,
                    checked=checked.append, first=first)  # fmt: skip

    assert [sorted(r.hosts) for r in checked] == [names]
    assert checked[0].hosts["h3"].status == "drift"
    # h1 and h3 have drift a deploy fixes: both went to pyinfra (which could not connect).
    for name in ("h1", "h3"):
        assert (got.hosts[name].applied or "").startswith("failed: Could not connect"), name
        assert not got.hosts[name].checked  # checked again: unreachable now
    assert got.hosts["h2"].applied is None and got.hosts["h2"].status == "needs-a-person"
    assert got.hosts["h4"].applied is None and got.hosts["h4"].status == "clean"
    assert got.apply and got.exit_code == 1
