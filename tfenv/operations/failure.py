"""Failing one host from inside an operation without stopping the others.

Operation bodies run again while pyinfra executes, and an exception raised
there ends the whole run, every host included. A problem found in one host's
observed state (Secure Boot, a broken daemon.json, a pending reboot) must fail
that host only, with a message that says what to do: this command does that.
"""

from __future__ import annotations

from pyinfra import logger
from pyinfra.api import FunctionCommand

from tfenv.drift import note_failure


def report_failure(state, host, message: str) -> bool:
    host.log_styled(f"Error: {message}", fg="red", log_func=logger.error)
    note_failure(host, message)  # for tfenv reconcile --deep
    return False  # pyinfra marks the host failed and goes on with the others


def fail_host(message: str) -> FunctionCommand:
    return FunctionCommand(report_failure, (message,), {})
