"""One rule for every path the declared data names (lock, secret files, CA files,
apt keys): ``~`` is the control machine user's home, and a relative path is
relative to the directory pyinfra (or tfenv) runs from."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_path(path: str, base_dir: Path) -> Path:
    expanded = Path(os.path.expanduser(path))
    return expanded if expanded.is_absolute() else base_dir / expanded
