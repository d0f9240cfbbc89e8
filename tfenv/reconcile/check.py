"""Check hosts against their declared state with one ``pyinfra --dry`` of tf_node,
and apply the tf_node deploy to the ones with drift, in batches.

The check is exactly a dry run: the same facts (one GpuHost and one TfNode
read per host), the same operations deciding. :mod:`tfenv.reconcile.collect`
makes the run write each host's drift items to a JSON-lines file, which this
module reads as hosts finish (the progress line) and at the end. A host with
no line was not checked; its reason comes from pyinfra's own output.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tfenv.reconcile.env import DEEP_ENV, GATE_ENV, OUT_ENV, PYINFRA_ARGS_ENV, SHARD_ENV
from tfenv.reconcile.report import HostResult, Item

Progress = Callable[[int, int, int], None]  # (hosts done, hosts targeted, hosts with drift)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def shard_of(host: str, shards: int) -> int:
    """The shard (1..shards) of ``host``: a stable hash of its name, the same on every
    machine and Python run (not ``hash()``, which is salted per process)."""
    return int(hashlib.sha256(host.encode()).hexdigest()[:8], 16) % shards + 1


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"([1-9][0-9]*)/([1-9][0-9]*)", text, re.ASCII)
    if not match or int(match.group(1)) > int(match.group(2)):
        raise ValueError(f"--shard {text!r}: expected K/N with 1 <= K <= N, such as 2/3")
    return int(match.group(1)), int(match.group(2))


def batch_size(text: str | None, targeted: int) -> int:
    """``--batch``: a number of hosts, or a share such as ``25%``; default 10%, at least 1."""
    text = text or "10%"
    match = re.fullmatch(r"([1-9][0-9]*)(%?)", text, re.ASCII)
    if not match or (match.group(2) and int(match.group(1)) > 100):
        raise ValueError(f"--batch {text!r}: expected a number of hosts or a share such as 10%")
    if match.group(2):
        return max(1, math.ceil(targeted * int(match.group(1)) / 100))
    return int(match.group(1))


@dataclass
class PyinfraRun:
    rc: int
    output: str  # pyinfra's stdout and stderr, colours stripped
    lines: list[dict]  # what the collector wrote, in order


class Started:
    """A pyinfra run started by :func:`start_pyinfra`; :meth:`finish` waits for it."""

    def __init__(
        self, argv: list[str], env: dict[str, str] | None, gated: bool, collect: bool
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tfenv-reconcile-")
        self.out = Path(self._tmp.name, "hosts.jsonl")
        self.log = Path(self._tmp.name, "pyinfra.log")
        self.out.touch()
        self._gate: int | None = None
        stdin: int = subprocess.DEVNULL
        if gated:
            # The gate is the run's stdin (pyinfra never reads it with --dry --json):
            # pass_fds would also leak the write end into the child under gevent's
            # Popen, and a child holding its own gate open never sees it close.
            stdin, self._gate = os.pipe()
            env = {**(env or os.environ), GATE_ENV: "0"}
        if collect:
            env = {**(env or os.environ), OUT_ENV: str(self.out)}
        with open(self.log, "wb") as log_file:
            self.process = subprocess.Popen(
                argv, stdin=stdin, stdout=log_file, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        if gated:
            os.close(stdin)

    def release(self, go: bool) -> None:
        """Let a gated run connect (``go``) or stop it before it connects to any host."""
        if self._gate is not None:
            os.write(self._gate, b"go" if go else b"stop")
            os.close(self._gate)
            self._gate = None

    def finish(self, hosts: Sequence[str], progress: Progress | None = None) -> PyinfraRun:
        self.release(False)  # never left waiting: a run not released connects nowhere
        seen = -1
        while True:
            try:
                self.process.wait(timeout=0.25)  # returns as soon as pyinfra ends
                break
            except subprocess.TimeoutExpired:
                if progress:
                    seen = _report_progress(self.out, len(hosts), seen, progress)
        lines = _read_lines(self.out)
        if progress:
            _report_progress(self.out, len(hosts), seen, progress)
        output = ANSI.sub("", self.log.read_text(errors="replace"))
        self._tmp.cleanup()
        return PyinfraRun(self.process.returncode, output, lines)


def start_pyinfra(
    inventory: str,
    deploy: str,
    limits: Sequence[str],
    *,
    dry: bool,
    collect: bool = False,
    deep: bool = False,
    shard: str | None = None,
    gated: bool = False,
    data: Sequence[str] = (),
    parallel: int | None = None,
) -> Started:
    """Start one pyinfra run of ``deploy`` limited to the ``limits`` patterns (and
    ``shard``): ``--dry`` (change detection on, nothing executed) or ``-y``
    (apply); with ``collect``, its result lines (:mod:`tfenv.reconcile.collect`)
    come back; ``deep`` lets it exec in containers; ``gated`` makes it wait for
    :meth:`Started.release` before it connects to any host."""
    # --json with --dry: change detection on and never a prompt (without -y, pyinfra
    # asks whether to go on when a host fails to connect; -y would skip detection).
    mode = ["--dry", "--json"] if dry else ["-y"]
    # A debugging aid (and the benchmark's command count): TFENV_PYINFRA_ARGS=--debug
    mode += os.environ.get(PYINFRA_ARGS_ENV, "").split()
    mode += ["--parallel", str(parallel)] if parallel else []  # hosts at once (default: all)
    patterns = [arg for limit in limits for arg in ("--limit", limit)]
    extra = [arg for item in data for arg in ("--data", item)]
    env = {**os.environ, DEEP_ENV: "1" if deep else "", SHARD_ENV: shard or ""}
    argv = [sys.executable, "-m", "pyinfra", *mode, inventory, deploy, *patterns, *extra]
    return Started(argv, env, gated, collect)


def run_pyinfra(
    inventory: str,
    deploy: str,
    hosts: Sequence[str],
    *,
    dry: bool,
    collect: bool = False,
    deep: bool = False,
    data: Sequence[str] = (),
    progress: Progress | None = None,
    parallel: int | None = None,
) -> PyinfraRun:
    """:func:`start_pyinfra` for exactly ``hosts``, waited for."""
    started = start_pyinfra(inventory, deploy, hosts, dry=dry, collect=collect, deep=deep,
                            data=data, parallel=parallel)  # fmt: skip
    return started.finish(hosts, progress)


def _read_lines(path: Path) -> list[dict]:
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue  # a line still being written: read at the end
    return lines


def _report_progress(out: Path, total: int, seen: int, progress: Progress) -> int:
    lines = _read_lines(out)
    if len(lines) != seen:
        drifted = sum(1 for line in lines if line.get("items") or line.get("error"))
        progress(len({line["host"] for line in lines}), total, drifted)
    return len(lines)


def host_failed(output: str, host: str) -> bool:
    """Whether pyinfra's output says ``host`` failed or could not be reached. pyinfra pads
    ``[NAME]`` to the inventory's longest host name: ``[lab-5]  Error`` beside ``lab-10``."""
    return re.search(rf"\[{re.escape(host)}\] *(Error|Could not)", output) is not None


def host_error(output: str, host: str, rc: int) -> str:
    """Why pyinfra did not finish checking ``host``, from its own output."""
    tag = f"[{host}]"
    mine = [line.split(tag, 1)[1].strip() for line in output.splitlines() if tag in line]
    mine = [line for line in mine if line not in ("Connected", "Success", "No changes")]
    for words in ("Error", "error", "Could not", "refused", "timed out", "No route"):
        hits = [line for line in mine if words in line]
        if hits:
            return hits[-1][:500]
    if mine:
        return mine[-1][:500]
    return (
        f"pyinfra ended (exit {rc}) before it finished checking this host; its output is "
        "in pyinfra.log in the state directory"
    )


def check_hosts(
    inventory: str,
    deploy: str,
    hosts: Sequence[str],
    progress: Progress | None = None,
    deep: bool = False,
    data: Sequence[str] = (),
) -> tuple[dict[str, HostResult], str]:
    """Each host's result from one ``pyinfra --dry``, and pyinfra's output."""
    run = run_pyinfra(inventory, deploy, hosts, dry=True, collect=True, deep=deep,
                      data=data, progress=progress)  # fmt: skip
    return results_of(run, hosts)


def results_of(run: PyinfraRun, hosts: Sequence[str]) -> tuple[dict[str, HostResult], str]:
    """Each of ``hosts``' result from a collecting dry run, and pyinfra's output."""
    results: dict[str, HostResult] = {}
    for line in run.lines:
        name = line.get("host")
        if name not in hosts:
            continue
        if "error" in line:
            results[name] = HostResult(name, checked=False, error=line["error"])
        else:
            items = [Item(**item) for item in line.get("items", [])]
            results[name] = HostResult(name, checked=True, items=items)
    for name in hosts:
        if name not in results:
            error = host_error(run.output, name, run.rc)
            results[name] = HostResult(name, checked=False, error=error)
    return results, run.output


def busy_data(force_busy: bool) -> list[str]:
    """pyinfra ``--data`` for ``--force-busy``: the check then classifies a change to a
    container in use as one --apply makes, as the apply run will."""
    return ["force_busy=true"] if force_busy else []


def apply_hosts(
    inventory: str,
    deploy: str,
    hosts: Sequence[str],
    batch: int,
    force_busy: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[dict[str, str], str]:
    """Run the deploy on ``hosts``, ``batch`` at a time: host -> "applied" or
    "failed: REASON", and pyinfra's output of every batch."""
    outcome: dict[str, str] = {}
    outputs = []
    data = busy_data(force_busy)
    batches = [list(hosts[i : i + batch]) for i in range(0, len(hosts), batch)]
    for number, group in enumerate(batches, 1):
        say(f"applying batch {number}/{len(batches)}: {', '.join(group)}")
        started = time.monotonic()
        run = run_pyinfra(inventory, deploy, group, dry=False, data=data)
        outputs.append(run.output)
        for name in group:
            failed = host_failed(run.output, name)
            outcome[name] = (
                f"failed: {host_error(run.output, name, run.rc)}" if failed else "applied"
            )
        done = sum(1 for name in group if outcome[name] == "applied")
        say(f"batch {number}/{len(batches)}: {done}/{len(group)} applied "
            f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    return outcome, "\n".join(outputs)


PROBE_DEPLOY = "deploys/reconcile_probe.py"  # beside deploys/tf_node.py, where pyinfra runs


def probe_hosts(inventory: str, hosts: Sequence[str]) -> tuple[dict[str, list[Item]], str]:
    """``--deep``: every declared container's health probe (a real TF op inside it) on
    ``hosts``: host -> an item per failed probe, and pyinfra's output."""
    run = run_pyinfra(inventory, PROBE_DEPLOY, hosts, dry=False, collect=True, deep=True)
    found: dict[str, list[Item]] = {name: [] for name in hosts}
    for line in run.lines:
        name = line.get("host")
        if name not in found:
            continue
        if "failure" in line:
            why, then = line["failure"], "see the container's log: docker logs --tail 50 NAME"
        elif "error" in line:
            why, then = f"could not run: {line['error']}", "check the host, then run again"
        else:
            continue
        found[name].append(Item("containers", "health probe", "passes", why, "person", then))
    return found, run.output
