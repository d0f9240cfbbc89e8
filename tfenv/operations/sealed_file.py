"""Secret files on hosts, compared without ever reading a value back.

A secret file tfenv writes gets a sidecar ``FILE.tfenv-seal`` (root, 0600)
with two lines:

1. the *seal*: scrypt of the content, salted with the file's path. The
   TfNode fact prints it; the control machine recomputes it from the value
   it holds and compares. scrypt makes guessing a weak value from a seal
   slow, and the path salt makes seals differ between files.
2. the sha256 of the content, which the fact compares on the host (so a
   file edited behind our back reads as "altered") and never prints.

Uploads never pass through a world-readable place: pyinfra's sudo upload
copies from a temporary file, so tfenv puts that file in a directory only
the SSH user can enter, and the destination exists with its final mode
before a byte is written (``cp`` onto an existing file keeps its mode).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from functools import lru_cache

from pyinfra.api import FileUploadCommand, QuoteString, StringCommand
from pyinfra.api.command import PyinfraCommand

from tfenv.facts.tf_node import SealedFile
from tfenv.layout import SEAL_SUFFIX
from tfenv.model.secrets import SecretValue

# scrypt cost: about 30 ms here; computed once per (path, value) per run, not per host.
SCRYPT_N = 2**14


@lru_cache(maxsize=1024)
def _scrypt(path: str, content: bytes) -> str:
    digest = hashlib.scrypt(content, salt=f"tfenv:{path}".encode(), n=SCRYPT_N, r=8, p=1, dklen=32)
    return "scrypt1:" + digest.hex()


def seal_of(path: str, content: SecretValue | bytes) -> str:
    """The seal of ``content`` written at ``path`` (what the TfNode fact shows)."""
    data = content.reveal().encode() if isinstance(content, SecretValue) else content
    return _scrypt(path, data)


def sealed_file_difference(
    path: str,
    content: SecretValue | bytes,
    mode: str,
    uid: int,
    gid: int,
    observed: dict[str, SealedFile],
) -> str | None:
    """Why the file at ``path`` must be (re)written, or ``None`` when it is as declared.

    The reason names what differs, never a value.
    """
    current = observed.get(path)
    if current is None:
        return "not written yet"
    if current.status != "intact":
        return f"the file was {current.status} behind tfenv's back"
    if current.seal != seal_of(path, content):
        return "the value changed"
    if (current.mode, current.uid, current.gid) != (mode.lstrip("0") or "0", uid, gid):
        observed_mode = f"{current.mode} {current.uid}:{current.gid}"
        return f"mode/owner is {observed_mode}, declared {mode} {uid}:{gid}"
    return None


def _staging(path: str) -> str:
    return "/tmp/tfenv-upload-" + hashlib.sha256(path.encode()).hexdigest()[:16]


def write_sealed_file(
    path: str,
    content: SecretValue | bytes,
    mode: str,
    uid: int,
    gid: int,
    directory_mode: str = "0700",
) -> list[PyinfraCommand]:
    """Commands that write ``content`` to ``path`` (and its seal) without exposing it."""
    data = content.reveal().encode() if isinstance(content, SecretValue) else content
    directory = posixpath.dirname(path)
    staging = _staging(path)
    new, seal_path = f"{path}.tfenv-new", f"{path}{SEAL_SUFFIX}"
    seal_text = f"{seal_of(path, content)}\n{hashlib.sha256(data).hexdigest()}\n"
    seal_new = f"{seal_path}.tfenv-new"
    make_directory = ["install", "-d", "-m", directory_mode, "-o", "root", "-g", "root"]
    make_value = ["install", "-m", mode, "-o", str(uid), "-g", str(gid), "/dev/null"]
    make_seal = ["install", "-m", "0600", "-o", "root", "-g", "root", "/dev/null"]
    return [
        # As the SSH user: a private directory for pyinfra's temporary copy.
        # mkdir fails on anything already there (a planted link included).
        StringCommand("rm", "-rf", staging, "&&", "mkdir", "-m", "0700", staging, _sudo=False),
        StringCommand(*make_directory, QuoteString(directory)),
        StringCommand(*make_value, QuoteString(new)),
        FileUploadCommand(io.BytesIO(data), new, remote_temp_filename=f"{staging}/value"),
        StringCommand(*make_seal, QuoteString(seal_new)),
        FileUploadCommand(
            io.BytesIO(seal_text.encode()), seal_new, remote_temp_filename=f"{staging}/seal"
        ),
        StringCommand("mv", "-f", QuoteString(new), QuoteString(path)),
        StringCommand("mv", "-f", QuoteString(seal_new), QuoteString(seal_path)),
        StringCommand("rm", "-rf", staging, _sudo=False),
    ]


def remove_sealed_file(path: str) -> list[PyinfraCommand]:
    return [StringCommand("rm", "-f", QuoteString(path), QuoteString(f"{path}{SEAL_SUFFIX}"))]
