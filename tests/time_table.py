"""pytest plugin: one time table at the end of the run.

Each test module's wall time (setup, call and teardown of its tests, its
module fixtures included), the lab's setup time (``tfenv lab up`` and
``down``, wherever a module's first lab test triggered it: taken out of that
module's row and shown on its own), and the total. ``make test`` prints it;
every change to the suite can be judged by it. ``--time-table=PATH`` also
writes the rows as JSON lines.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

_module_seconds: dict[str, float] = defaultdict(float)
_module_tests: dict[str, int] = defaultdict(int)
_lab_seconds: dict[str, float] = defaultdict(float)  # what -> seconds
_current = {"module": ""}
_started = {"at": 0.0}


@contextmanager
def lab_setup(what: str) -> Iterator[None]:
    """Time ``what`` (lab up, lab down) as lab setup, not as the running module's."""
    start = time.monotonic()
    try:
        yield
    finally:
        seconds = time.monotonic() - start
        _lab_seconds[what] += seconds
        if _current["module"]:
            _module_seconds[_current["module"]] -= seconds


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--time-table", default=None, metavar="PATH",
                     help="also write the time table as JSON lines to PATH")  # fmt: skip


def pytest_sessionstart(session: pytest.Session) -> None:
    _started["at"] = time.monotonic()


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    _current["module"] = nodeid.split("::")[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::")[0]
    _module_seconds[module] += report.duration
    if report.when == "call" or (report.when == "setup" and report.skipped):
        _module_tests[module] += 1


def _clock(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    return f"{int(seconds // 60):3d}:{seconds % 60:04.1f}"


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if not _module_seconds:
        return
    # (label, tests or None, seconds): the modules, slowest first, the lab, the total
    rows: list[tuple[str, int | None, float]] = [
        (module, _module_tests[module], seconds)
        for module, seconds in sorted(_module_seconds.items(), key=lambda kv: -kv[1])
    ]
    rows += [(f"({what})", None, seconds) for what, seconds in sorted(_lab_seconds.items())]
    rows.append(("total", sum(_module_tests.values()), time.monotonic() - _started["at"]))
    width = max(len(label) for label, _, _ in rows)
    terminalreporter.section("time table (min:s, wall)")
    terminalreporter.write_line(f"{'module':<{width}}  {'tests':>5}  {'time':>8}")
    for label, tests, seconds in rows:
        count = "" if tests is None else tests
        terminalreporter.write_line(f"{label:<{width}}  {count:>5}  {_clock(seconds)}")
    path = config.getoption("--time-table")
    if path:
        with open(path, "w") as out:
            for label, tests, seconds in rows:
                row = {"module": label, "seconds": round(seconds, 1)}
                out.write(json.dumps(row if tests is None else {**row, "tests": tests}) + "\n")
