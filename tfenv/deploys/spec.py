"""The NodeSpec of the host a deploy is running for."""

from __future__ import annotations

import os
from pathlib import Path

from pyinfra.api.exceptions import DeployError

from tfenv.model.load import load
from tfenv.model.problems import SpecError, format_problems
from tfenv.model.spec import NodeSpec


def host_spec(host, base_dir: Path | None = None) -> NodeSpec:
    """Load and validate ``host``'s declared data; a DeployError lists every problem."""
    try:
        return load(host.name, host.data.dict(), base_dir or Path(os.getcwd()))
    except SpecError as exc:
        raise DeployError(
            f"{host.name}: invalid declared data:\n{format_problems(exc.problems)}"
        ) from None
