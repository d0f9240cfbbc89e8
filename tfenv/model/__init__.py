"""The declared fleet model: typed host specs loaded from pyinfra data.

``load`` is ``tfenv.model.load.load`` (the submodule's name would shadow it here).
Names load on first use (PEP 562): ``tfenv reconcile`` starts its pyinfra run
before it imports pydantic and pyinfra itself.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Problem": "tfenv.model.problems",
    "SpecError": "tfenv.model.problems",
    "format_problems": "tfenv.model.problems",
    "SecretRef": "tfenv.model.secrets",
    "SecretValue": "tfenv.model.secrets",
    "read_secret": "tfenv.model.secrets",
    "NodeSpec": "tfenv.model.spec",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'tfenv.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
