"""Files in the state directory: reports a reader never sees half of, and the
locks that keep two runs of one kind apart.

node_exporter's textfile collector and a web server may read the reconcile's
outputs at any moment: each is written to a temporary file in the same
directory, synced, then renamed over the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically: a reader sees the old
    file or the new one, whole. ``mode`` is the new file's permission bits
    (readable by others by default: node_exporter often runs as its own user)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem can)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def hold_exclusive(path: Path) -> tuple[IO[str] | None, str]:
    """An exclusive lock on ``path`` (flock, released when the handle closes or the
    process dies, kill -9 included), with this process's pid written in it:
    (the open handle, "") when taken, (None, what its holder wrote) when not."""
    handle = open(path, "a+")  # noqa: SIM115  # held by the caller until it is done
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        return None, holder
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle, ""
