"""Signed apt repositories: keyring file, ``signed-by`` list file, stale files gone.

The pains it designs against: "Conflicting values set for option Signed-By"
from a second list file for the same repository (cuda-keyring's, an old
``nvidia-docker.list``), and a repository added in the same run that apt never
fetched. It reads the host's apt sources and keyring digests from the wide
:class:`~tfenv.facts.gpu.GpuHost` fact (pass ``observed=`` to reuse one read).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from tfenv.drift import record
from tfenv.facts.gpu import KEYRING_DIRS, KEYRING_WORDS, GpuHostState, gpu_host
from tfenv.operations.config_file import write_file
from tfenv.operations.failure import fail_host

SOURCES_DIR = "/etc/apt/sources.list.d/"
ARMORED = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
SUITE_RE = re.compile(r"^[A-Za-z0-9_./$()-]+$")


def repository_line(url: str, keyring: str, suite: str = "/", components: tuple = ()) -> str:
    """The one line a tfenv-managed list file holds."""
    return " ".join(["deb", f"[signed-by={keyring}]", url, suite, *components]) + "\n"


def keyring_for(key: str, stem: str) -> str:
    """``/usr/share/keyrings/STEM.gpg`` for a binary key file, ``.asc`` for an armored
    one or a URL (published keys are armored): apt reads the format from the name."""
    armored = key.startswith("https://")
    if not armored:
        try:
            with open(key, "rb") as handle:
                armored = _is_armored(handle.read(64))
        except OSError:
            pass  # signed_repository reports the unreadable key
    return f"/usr/share/keyrings/{stem}.{'asc' if armored else 'gpg'}"


def _is_armored(data: bytes) -> bool:
    return data.lstrip().startswith(ARMORED)


def _entries(path: str, text: str) -> list[str]:
    """The repository entries of a sources file: one-line ``deb`` lines, or the
    ``URIs:`` fields of a deb822 ``.sources`` file."""
    lines = [line.strip() for line in text.splitlines()]
    if path.endswith(".sources"):
        return [line for line in lines if line.lower().startswith("uris:")]
    return [line for line in lines if line and not line.startswith("#")]


def _read_key(key: str) -> bytes:
    try:
        data = Path(key).read_bytes()
    except OSError as exc:
        raise OperationError(
            f"repository key {key}: cannot read it on this machine ({exc.strerror}); "
            "point 'key' at the repository's signing key file"
        ) from None
    if not data:
        raise OperationError(f"repository key {key}: the file is empty")
    return data


@operation()
def signed_repository(
    list_file: str,
    url: str,
    key: str,
    keyring: str,
    suite: str = "/",
    components: tuple[str, ...] | list[str] = (),
    present: bool = True,
    replaces: tuple[str, ...] | list[str] = (),
    observed: GpuHostState | None = None,
):
    """
    Add (or remove) an apt repository signed by its own keyring.

    + list_file: the list file, under /etc/apt/sources.list.d/, ending in .list
    + url: the repository URL (http or https)
    + key: local path of the signing key (binary, or ASCII-armored for a .asc keyring),
      or an https URL of an armored key, fetched by the host when its keyring is missing
    + keyring: where the key goes on the host, referenced by ``signed-by``
    + suite: the suite; ``/`` for flat repositories such as NVIDIA's
    + components: the components, for non-flat repositories
    + present: whether the repository should be there
    + replaces: URL fragments of older list files for the same packages; any other
      list file mentioning one of them (or ``url``) is removed, so apt never sees
      two ``Signed-By`` values for one repository
    + observed: the host's :class:`~tfenv.facts.gpu.GpuHostState`, if already read

    ``apt-get update`` runs whenever the repository changed, so the packages
    are found in the same run.

    **Example:**

    .. code:: python

        signed_repository(
            name="NVIDIA container toolkit repository",
            list_file="/etc/apt/sources.list.d/nvidia-container-toolkit.list",
            url="https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)",
            key="keys/nvidia-container-toolkit.gpg",
            keyring="/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg",
            replaces=["nvidia.github.io/nvidia-docker"],
        )
    """
    if not (list_file.startswith(SOURCES_DIR) and list_file.endswith(".list")):
        raise OperationError(f"list_file {list_file!r}: expected {SOURCES_DIR}NAME.list")
    if not re.fullmatch(r"https?://[!-\\^-~]+", url, re.ASCII):
        raise OperationError(f"url {url!r}: expected an http(s) URL")
    directory, _, file_name = keyring.rpartition("/")
    if (
        directory not in KEYRING_DIRS
        or not file_name.endswith((".gpg", ".asc"))
        or not any(word in file_name for word in KEYRING_WORDS)
    ):
        # Elsewhere the GpuHost fact would not see it, and every run would rewrite it.
        raise OperationError(
            f"keyring {keyring!r}: expected {' or '.join(KEYRING_DIRS)}/NAME.gpg (or .asc), "
            f"NAME containing {', '.join(KEYRING_WORDS)}"
        )
    for part in (suite, *components):
        if not SUITE_RE.fullmatch(part):
            raise OperationError(f"suite/component {part!r}: letters, digits and ./_-$() only")

    state = observed or gpu_host(host)
    changed = False
    if not present:
        for path in (list_file, keyring):
            if path in state.apt_sources or path in state.keyrings:
                record("apt", path, "absent", "present")
                yield StringCommand("rm", "-f", QuoteString(path))
                changed = True
        if changed:
            yield "apt-get update -q"
        else:
            host.noop(f"repository {list_file} is absent")
        return

    if key.startswith("https://"):
        # Published keys (NVIDIA's gpgkey, Docker's gpg) are ASCII-armored. The host
        # fetches it once; a key file on this machine is compared by digest instead.
        if not keyring.endswith(".asc"):
            raise OperationError(f"key {key} is a URL: name the keyring .asc (an armored key)")
        if keyring not in state.keyrings:
            record("apt", f"keyring {keyring}", key, "absent")
            # Into a temporary file first: a failed download leaves no half key behind.
            partial = QuoteString(f"{keyring}.partial")
            yield StringCommand(
                "curl", "-fsSL", "--proto", "=https", "-o", partial, QuoteString(key),
                "&&", "mv", "-f", partial, QuoteString(keyring),
            )  # fmt: skip
            yield StringCommand("chmod", "0644", QuoteString(keyring))
            changed = True
    else:
        data = _read_key(key)
        armored = _is_armored(data)
        if armored != keyring.endswith(".asc"):
            kind = "ASCII-armored" if armored else "binary"
            raise OperationError(
                f"key {key} is {kind}: name the keyring {'.asc' if armored else '.gpg'} "
                "(apt reads the format from the extension)"
            )
        if state.keyrings.get(keyring) != hashlib.sha256(data).hexdigest():
            found = "another key" if keyring in state.keyrings else "absent"
            record("apt", f"keyring {keyring}", key, found)
            yield from write_file(keyring, data)
            changed = True

    wanted = repository_line(url, keyring, suite, tuple(components))
    if state.apt_sources.get(list_file) != wanted:
        found = "other entries" if list_file in state.apt_sources else "absent"
        record("apt", list_file, wanted.strip(), found)
        yield from write_file(list_file, wanted)
        changed = True

    markers = (url.rstrip("/"), *replaces)
    for path, text in sorted(state.apt_sources.items()):
        entries = _entries(path, text)
        hits = [entry for entry in entries if any(m in entry for m in markers)]
        if path == list_file or not hits:
            continue
        if len(hits) < len(entries):
            # Deleting it would drop other repositories the user relies on.
            yield fail_host(
                f"{path} lists this repository ({hits[0].strip()}) next to others: remove "
                f"that entry by hand (apt would see two Signed-By values), then run again"
            )
            return
        record("apt", path, "absent", f"also lists {hits[0].strip()}")
        yield StringCommand("rm", "-f", QuoteString(path))
        changed = True

    if changed:
        yield "apt-get update -q"
    else:
        host.noop(f"repository {url} is signed by {keyring} and listed only in {list_file}")
