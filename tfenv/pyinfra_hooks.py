"""Hooks into a pyinfra CLI run: validate every targeted host before any connects.

pyinfra executes ``config.py`` (from the directory it runs in) before it
connects; ours registers :class:`ValidateBeforeConnect`, so bad data stops
the run with one line per problem and zero SSH connections.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.state import BaseStateCallback

from tfenv.model.inventory import validate_hosts
from tfenv.model.load import warnings
from tfenv.model.problems import format_problems


class InvalidDeclaredData(PyinfraError):
    """The declared data has problems; nothing was contacted."""


class ValidateBeforeConnect(BaseStateCallback):
    """Validates all hosts of the run at the first connect attempt, once."""

    def __init__(self) -> None:
        self._done = False
        self._error: InvalidDeclaredData | None = None

    def host_before_connect(self, state, host) -> None:  # type: ignore[override]
        if not self._done:
            self._done = True
            hosts = [h for h in state.inventory if state.is_host_in_limit(h)]
            base = Path(getattr(state, "cwd", None) or os.getcwd())
            specs, problems = validate_hosts(hosts, base)
            cautions = [w for spec in specs.values() for w in warnings(spec)]
            if cautions:
                logger.warning("tfenv: " + format_problems(cautions).replace("\n", "\ntfenv: "))
            if problems:
                self._error = InvalidDeclaredData(
                    "tfenv: the declared data has problems; no host was contacted.\n"
                    + format_problems(problems)
                    + "\nFix the fields above (tfenv validate INVENTORY checks them)."
                )
        if self._error is not None:
            raise self._error


def install(state) -> None:
    """Register the validation hook on a pyinfra State (idempotent).

    ``config.py`` runs before ``State.init`` creates the callback list, so the
    handler is added right after ``init`` (still before any connection).
    """
    real = state._get_module() if hasattr(state, "_get_module") else state
    if getattr(real, "_tfenv_validation_installed", False):
        return
    real._tfenv_validation_installed = True
    original_init = real.init

    def init(*args, **kwargs):
        original_init(*args, **kwargs)
        real.add_callback_handler(ValidateBeforeConnect())

    real.init = init
