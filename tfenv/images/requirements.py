"""The pip requirements file of a team image: every package pip installs, with
its exact version and hash, written by ``tfenv image lock-deps``.

pip resolves the declared packages inside the base image itself (so the
Python version and platform are the image's) with ``--dry-run --report``; the
report names each distribution it would install and the sha256 of the file
it chose. ``pip install --require-hashes`` then refuses anything else.

The file's second line records what it was resolved from (the base digest,
the Python and the declared packages): a spec that changed makes it stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

HEADER = "# Written by `tfenv image lock-deps {spec}`: do not edit by hand.\n"
INPUTS = "# inputs: {inputs}\n"
INPUTS_RE = re.compile(r"^# inputs: (sha256:[0-9a-f]{64})$", re.MULTILINE)
# Declared packages the base image already has at the declared version: pip
# installs nothing for them, and the file says so.
IN_BASE = "# in the base image: {name}=={version}\n"
IN_BASE_RE = re.compile(r"^# in the base image: ([A-Za-z0-9._-]+)==(\S+)$", re.MULTILINE)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
LINE_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!-]+)"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)$"
)


class RequirementsError(ValueError):
    """A requirements file or pip report tfenv cannot use."""


@dataclass(frozen=True)
class Pinned:
    name: str  # normalised (PEP 503)
    version: str
    hashes: tuple[str, ...]  # sha256 hex


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def from_pip_report(report: dict[str, Any]) -> list[Pinned]:
    """The packages a ``pip install --dry-run --report`` would install."""
    pinned = []
    for item in report.get("install", []):
        metadata = item.get("metadata", {})
        info = item.get("download_info", {})
        archive = info.get("archive_info")
        name, version = metadata.get("name"), metadata.get("version")
        if not name or not version:
            raise RequirementsError("pip's report has an entry without name or version")
        if archive is None:
            raise RequirementsError(
                f"{name} {version} comes from {info.get('url', 'a non-archive source')}: "
                "only released files (wheels, sdists) can be pinned by hash"
            )
        digest = (archive.get("hashes") or {}).get("sha256")
        if digest is None and str(archive.get("hash", "")).startswith("sha256="):
            digest = archive["hash"].removeprefix("sha256=")
        if not digest or not SHA256_RE.fullmatch(digest):
            raise RequirementsError(f"{name} {version}: pip's report gives no sha256")
        pinned.append(Pinned(normalise(name), version, (digest,)))
    return sorted(pinned, key=lambda p: p.name)


def render(pinned: list[Pinned], spec: str, inputs: str, in_base: dict[str, str]) -> str:
    lines = [HEADER.format(spec=spec), INPUTS.format(inputs=inputs)]
    lines += [IN_BASE.format(name=normalise(n), version=v) for n, v in sorted(in_base.items())]
    for package in pinned:
        hashes = "".join(f" \\\n    --hash=sha256:{h}" for h in package.hashes)
        lines.append(f"{package.name}=={package.version}{hashes}\n")
    return "".join(lines)


def parse(text: str) -> tuple[str | None, list[Pinned]]:
    """(recorded inputs, packages); raises :class:`RequirementsError` naming the line."""
    match = INPUTS_RE.search(text)
    packages = []
    logical = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        logical += " " + line.removesuffix("\\").strip()
        if line.endswith("\\"):
            continue
        entry = LINE_RE.fullmatch(logical.strip())
        if entry is None:
            raise RequirementsError(
                f"line {number}: expected NAME==VERSION --hash=sha256:<64 hex> (every "
                "requirement pinned exactly, with its hash); write the file with "
                "tfenv image lock-deps"
            )
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry["hashes"]))
        packages.append(Pinned(normalise(entry["name"]), entry["version"], hashes))
        logical = ""
    if logical:
        raise RequirementsError("the last line ends with '\\'")
    return (match[1] if match else None), packages


def in_base(text: str) -> dict[str, str]:
    """The declared packages the file records as already in the base image."""
    return {normalise(name): version for name, version in IN_BASE_RE.findall(text)}


def declared_problems(
    declared: dict[str, str], pinned: list[Pinned], base: dict[str, str]
) -> list[str]:
    """Declared packages missing from the file, or at another version there."""
    by_name = {p.name: p for p in pinned}
    by_name.update({n: Pinned(n, v, ()) for n, v in base.items() if n not in by_name})
    problems = []
    for name, version in sorted(declared.items()):
        found = by_name.get(normalise(name))
        if found is None:
            problems.append(f"{name} is declared but not in the file")
        elif found.version != version:
            problems.append(f"{name}: declared {version}, the file pins {found.version}")
    return problems
