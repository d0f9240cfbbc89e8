"""pytest plugin: under CI, a skipped lab test fails the run.

Lab tests skip on a developer's machine without Docker; in CI that would turn
"no engine" into a green run that tested nothing real. With ``CI`` set, any
skipped test marked ``lab`` makes the session exit 1, and says which.
"""

from __future__ import annotations

import os

import pytest


def _skipped_lab_tests(config: pytest.Config) -> list[str]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return []
    return [r.nodeid for r in reporter.stats.get("skipped", []) if "lab" in r.keywords]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _skipped_lab_tests(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = _skipped_lab_tests(config)
    if os.environ.get("CI") and skipped:
        terminalreporter.write_line(
            f"CI: {len(skipped)} lab test(s) skipped, which CI does not allow "
            f"(first: {skipped[0]}). Is the Docker engine installed and running?",
            red=True,
        )
