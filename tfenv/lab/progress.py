"""Progress lines for long lab steps: what is happening, and how long it took."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def step(message: str) -> Iterator[None]:
    """Print ``==> message ...`` now and ``done (N.Ns)`` when the block ends."""
    say(f"==> {message} ...")
    started = time.monotonic()
    yield
    say(f"    done ({time.monotonic() - started:.1f}s)")
