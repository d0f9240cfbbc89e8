"""Secret references and the values they resolve to.

The declared data only ever holds *references* (an environment variable name
on the control machine, or a path to a file only its owner can read). Values
are read at the last moment and wrapped in :class:`SecretValue`, whose
``repr``/``str`` never show the value.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tfenv.errors import TfenvError
from tfenv.paths import resolve_path

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SecretRef(BaseModel):
    """Where a secret's value comes from: ``{"env": "VAR"}`` or ``{"file": "path"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    file: str | None = Field(default=None, min_length=1)
    # For tokens tfenv may invent (Jupyter): `tfenv secrets init` writes a random
    # value to a missing file. Never for passwords that exist elsewhere.
    generate: bool = False

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("exactly one of 'env' or 'file'")
        if self.generate and self.file is None:
            raise ValueError("'generate' only together with 'file'")
        return self

    @property
    def kind(self) -> Literal["env", "file"]:
        return "env" if self.env is not None else "file"

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


class SecretValue:
    """A resolved secret. Its value is only reachable through :meth:`reveal`."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str):
        self.name = name
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretValue(name={self.name!r}, value='***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash((SecretValue, self._value))

    def __reduce__(self):  # never pickle a value into a cache or a report by accident
        raise TypeError("SecretValue cannot be pickled")


class SecretUnavailable(TfenvError):
    """A reference that cannot be resolved; the message never holds the value."""


def looks_like_a_value(text: str) -> bool:
    """A 'path' with no directory or extension, long, of letters and digits mixed:
    more likely a token pasted where its file's path belongs. Never echoed."""
    return (
        "/" not in text
        and "." not in text
        and len(text) >= 12
        and any(c.isdigit() for c in text)
        and any(c.isalpha() for c in text)
    )


def check_secret(name: str, ref: SecretRef, base_dir: Path) -> str | None:
    """Why ``ref`` cannot be used, or ``None`` if it can. Reads no value."""
    if ref.env is not None:
        if ref.env not in os.environ:
            return f"environment variable {ref.env} to be set on the control machine (it is not)"
        if os.environ[ref.env] == "":
            return f"environment variable {ref.env} to be non-empty"
        return None
    path = resolve_path(ref.file or "", base_dir)
    try:
        info = path.stat()
    except FileNotFoundError:
        if looks_like_a_value(ref.file or ""):
            return (
                "the path of a file holding the secret (no such file; the value given is not "
                "shown, as it looks like a pasted secret rather than a path)"
            )
        hint = "; run: tfenv secrets init INVENTORY" if ref.generate else ""
        return f"file {path} to exist (it does not{hint})"
    except PermissionError:
        return f"file {path} to be readable by this user"
    if not stat.S_ISREG(info.st_mode):
        return f"file {path} to be a regular file"
    if info.st_mode & 0o077:
        return (
            f"file {path} to be readable only by its owner "
            f"(mode is {stat.S_IMODE(info.st_mode):04o}; run: chmod 600 {path})"
        )
    if info.st_uid != os.geteuid():
        return f"file {path} to be owned by the user running tfenv (uid {os.geteuid()})"
    if info.st_size == 0:
        return f"file {path} to be non-empty"
    return None


def read_secret(name: str, ref: SecretRef, base_dir: Path) -> SecretValue:
    """Resolve ``ref`` to its value; raises :class:`SecretUnavailable` without the value."""
    why = check_secret(name, ref, base_dir)
    if why is not None:
        raise SecretUnavailable(f"secret {name!r}: expected {why}")
    if ref.env is not None:
        return SecretValue(name, os.environ[ref.env])
    text = resolve_path(ref.file or "", base_dir).read_text()
    # One trailing newline is what editors add; keep everything else exactly.
    return SecretValue(name, text[:-1] if text.endswith("\n") else text)


def generate_secret_file(ref: SecretRef, base_dir: Path) -> Path | None:
    """Write a random token to ``ref``'s file if it is missing and may be generated.

    Returns the path written, or ``None`` when nothing was done. The file is
    created 0600 in one step, so no other user can ever read it.
    """
    if not ref.generate or ref.file is None:
        return None
    path = resolve_path(ref.file, base_dir)
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path
