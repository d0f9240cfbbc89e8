"""Running local commands for the lab, with errors that say what to do next."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tfenv.errors import TfenvError


class LabError(TfenvError):
    """A lab step failed; the message says what to do next."""


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: str | bytes | None = None,
    timeout: float | None = None,
    hint: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` capturing output; on failure raise LabError with its stderr.

    ``env`` adds to (does not replace) this process's environment.
    """
    text = not isinstance(input, bytes)
    try:
        result = subprocess.run(
            list(cmd),
            capture_output=True,
            input=input,
            text=text,
            timeout=timeout,
            check=False,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} is not installed. {hint}".strip()) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd[:3])} ... took longer than {timeout}s. {hint}") from exc
    if check and result.returncode != 0:
        err = result.stderr if text else result.stderr.decode(errors="replace")
        raise LabError(
            f"{' '.join(cmd[:4])} ... failed (exit {result.returncode}): "
            f"{err.strip()[-2000:]}\n{hint}".strip()
        )
    return result


def ssh_keygen(path: Path, comment: str) -> None:
    """An ed25519 key pair at ``path`` (and ``path.pub``), made once and kept."""
    if not path.exists():
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            hint="Install OpenSSH's client tools (apt-get install openssh-client).",
        )
