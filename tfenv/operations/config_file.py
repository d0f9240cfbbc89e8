"""Writing a small root-owned config file the way every tfenv operation does."""

from __future__ import annotations

import io
from collections.abc import Iterator

from pyinfra.api import FileUploadCommand, QuoteString, StringCommand
from pyinfra.api.command import PyinfraCommand


def write_file(path: str, content: str | bytes) -> Iterator[PyinfraCommand]:
    """Upload ``content`` to ``path``, world-readable (apt and modprobe read it as others)."""
    data = content.encode() if isinstance(content, str) else content
    yield FileUploadCommand(io.BytesIO(data), path)
    yield StringCommand("chmod", "0644", QuoteString(path))
