"""Benchmark: a clean ``tfenv reconcile`` on 1 and 3 lab hosts, beside a one-ssh-per-host
script reading the same state and ``pyinfra --dry`` of tf_node.

    TFENV_LAB_DIR=... .venv/bin/python benchmarks/reconcile.py --hosts lab-1 lab-2 lab-3

Run it on a provisioned lab (after a tf_node run, so nothing drifts). For each
of the three it prints the median wall time of --repeat runs, the remote
commands per host (pyinfra's --debug "Running command on HOST"; the script runs
one), and the peak RSS of the largest control-machine process. Prints
figures; asserts none.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tfenv.facts.gpu import SCRIPT as GPU_SCRIPT  # noqa: E402
from tfenv.facts.tf_node import SCRIPT as NODE_SCRIPT  # noqa: E402
from tfenv.lab.fleet import current_state, ssh_command  # noqa: E402

COMMAND = re.compile(r"Running command on (\S+?): ")
# Runs ARGV and prints the peak RSS (KiB) of its largest process, itself or a child.
MEASURE = (
    "import resource, subprocess, sys; "
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)"
)


def measured(argv: list[str], env: dict | None = None) -> tuple[float, int, int]:
    """(wall seconds, exit code, peak RSS KiB) of ``argv``."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", MEASURE, *argv], cwd=REPO, env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    wall = time.monotonic() - started
    rc, rss = result.stderr.strip().splitlines()[-1].split()
    return wall, int(rc), int(rss)


def one_ssh_per_host(hosts: list[str]) -> None:
    """The baseline: read both facts' state over one SSH command per host, in parallel."""
    state = current_state()
    ports = {h.name: h.port for h in state.hosts}
    script = GPU_SCRIPT + "\n" + NODE_SCRIPT

    def read(name: str) -> int:
        argv = ssh_command(state.key, state.known_hosts, ports[name], state.user)
        return subprocess.run([*argv, "sudo sh -s"], input=script, capture_output=True,
                              text=True, check=False).returncode  # fmt: skip

    with ThreadPoolExecutor(len(hosts)) as pool:
        codes = list(pool.map(read, hosts))
    sys.exit(max(codes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", nargs="+", required=True, help="lab hosts (the 3 to use)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        one_ssh_per_host(args.baseline)
    header = ("hosts", "what", "wall s (median)", "cmds/host", "peak RSS MiB")
    print(f"{header[0]:>5}  {header[1]:<26} {header[2]:>15} {header[3]:>9} {header[4]:>12}")
    for hosts in (args.hosts[:1], args.hosts):
        limits = [flag for host in hosts for flag in ("--limit", host)]
        with tempfile.TemporaryDirectory() as state_dir:
            cases = {
                "tfenv reconcile": [
                    sys.executable,
                    "-c",
                    "from tfenv.cli import main; main()",
                    "reconcile",
                    "inventories/lab.py",
                    *limits,
                    "--quiet",
                    "--state-dir",
                    state_dir,
                ],
                "one ssh per host (script)": [
                    sys.executable,
                    __file__,
                    "--hosts",
                    "x",
                    "--baseline",
                    *hosts,
                ],
                "pyinfra --dry tf_node": [
                    sys.executable,
                    "-m",
                    "pyinfra",
                    "--dry",
                    *limits,
                    "inventories/lab.py",
                    "deploys/tf_node.py",
                ],
            }
            for what, argv in cases.items():
                runs = [measured(argv) for _ in range(args.repeat)]
                codes = {rc for _, rc, _ in runs}
                wall = statistics.median(w for w, _, _ in runs)
                rss = max(r for _, _, r in runs) / 1024
                commands = "1"
                if what != "one ssh per host (script)":
                    commands = count_commands(argv, what, state_dir)
                note = "" if codes <= {0} else f"  (exit {sorted(codes)})"
                print(f"{len(hosts):>5}  {what:<26} {wall:>15.2f} {commands:>9} {rss:>12.0f}{note}")


def count_commands(argv: list[str], what: str, state_dir: str) -> str:
    """Remote commands per host, from pyinfra's --debug output."""
    env = {**os.environ, "TFENV_PYINFRA_ARGS": "--debug"}
    if what == "tfenv reconcile":
        subprocess.run(argv, cwd=REPO, env=env, capture_output=True, check=False)
        output = (Path(state_dir) / "pyinfra.log").read_text()
    else:
        result = subprocess.run([*argv[:3], "--debug", *argv[3:]], cwd=REPO,
                                capture_output=True, text=True, check=False)  # fmt: skip
        output = result.stdout + result.stderr
    counts = collections.Counter(COMMAND.findall(output))
    return json.dumps(sorted(set(counts.values()))).strip("[]") or "?"


if __name__ == "__main__":
    main()
