"""Benchmark: a no-op `deploys/tf_node.py` run on the lab, per host: wall time and the
number of remote commands (counted from pyinfra's --debug "Running command on HOST").

    TFENV_LAB_DIR=... .venv/bin/python benchmarks/tf_node_noop.py [--limit HOST ...]

Run it after a first tf_node run, so the run changes nothing. Prints figures; asserts none.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMAND = re.compile(r"Running command on (\S+?): ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", action="append", default=[], help="lab host (repeatable)")
    args = parser.parse_args()
    limit = [flag for host in args.limit for flag in ("--limit", host)]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--debug", *limit,
         "inventories/lab.py", "deploys/tf_node.py"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ}, check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    output = result.stdout + result.stderr
    if result.returncode != 0:
        sys.exit(f"tf_node failed (exit {result.returncode}):\n{output[-3000:]}")
    per_host = collections.Counter(COMMAND.findall(output))
    totals = [line for line in output.splitlines() if line.strip().startswith("Grand total")]
    total = totals[-1].strip() if totals else ""
    print(f"hosts: {len(per_host)}   wall time: {wall:.1f} s   {total}")
    for host, count in sorted(per_host.items()):
        print(f"  {host}: {count} remote commands")


if __name__ == "__main__":
    main()
