"""The secret gate: is any declared secret's value inside a built image?

``docker save`` gives the image as a tar of layer tars plus its config. Every
file of every layer is searched for every secret's value, and so is the
config (environment, labels, and each step's command with its build
arguments). The stream is read once, front to back; nothing is unpacked to
disk. A hit is reported by secret *name*, layer number and path, never by
value.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

CHUNK = 1 << 20
MIN_SECRET_LENGTH = 8  # shorter values match by chance: reported as not searched


@dataclass(frozen=True)
class Hit:
    secret: str  # the secret's name
    layer: str  # "layer 7/12 (sha256:..., RUN ...)" or "image config"
    path: str  # the file inside the layer, or the config field


@dataclass(frozen=True)
class Needle:
    name: str
    value: bytes


def needles(secrets: dict[str, str]) -> tuple[list[Needle], list[str]]:
    """The values to search for, and the names of those too short to search."""
    found, short = [], []
    for name, value in sorted(secrets.items()):
        if len(value) < MIN_SECRET_LENGTH:
            short.append(name)
        else:
            found.append(Needle(name, value.encode()))
    return found, short


def search_stream(stream: IO[bytes], wanted: list[Needle]) -> set[str]:
    """Names of the needles found in ``stream``, read in overlapping chunks."""
    if not wanted:
        return set()
    overlap = max(len(n.value) for n in wanted) - 1
    found: set[str] = set()
    tail = b""
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return found
        window = tail + chunk
        for needle in wanted:
            if needle.name not in found and needle.value in window:
                found.add(needle.name)
        tail = window[-overlap:] if overlap else b""


def _search_layer(stream: IO[bytes], wanted: list[Needle]) -> list[tuple[str, str]]:
    """(secret name, path) for every file of one layer tar holding a value."""
    hits = []
    with tarfile.open(fileobj=stream, mode="r|*") as layer:
        for member in layer:
            named = member.name.encode() + b"\n" + member.linkname.encode()
            for needle in wanted:
                if needle.value in named:
                    hits.append((needle.name, "(a file's name or link target: not shown)"))
            if not member.isfile():
                continue
            content = layer.extractfile(member)
            if content is None:
                continue
            path = "/" + member.name.removeprefix("./").lstrip("/")
            for name in sorted(search_stream(content, wanted)):
                hits.append((name, _masked(path, wanted)))
    return hits


def scan_saved_image(stream: IO[bytes], secrets: dict[str, str]) -> tuple[list[Hit], list[str]]:
    """Hits of ``secrets`` (name -> value) in a ``docker save`` stream, and the
    names of secrets too short to search."""
    wanted, short = needles(secrets)
    by_layer: dict[str, list[tuple[str, str]]] = {}
    documents: dict[str, bytes] = {}
    with tarfile.open(fileobj=stream, mode="r|") as saved:
        for member in saved:
            if not member.isfile():
                continue
            content = saved.extractfile(member)
            if content is None:
                continue
            if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                # blobs/ (newer docker) may hold the config as well as layers
                head = content.read(512)
                rest = _Prefixed(head, content)
                if member.name.endswith("layer.tar") or _is_tar(head):
                    by_layer[member.name] = _search_layer(rest, wanted) if head else []
                    continue
                documents[member.name] = head + content.read()
            elif member.name.endswith(".json") or member.name == "repositories":
                documents[member.name] = content.read()
    return _report(by_layer, documents, wanted), short


def _is_tar(head: bytes) -> bool:
    """A tar's first header, or an empty tar (zeros: a layer that adds nothing)."""
    return (len(head) >= 262 and head[257:262] == b"ustar") or (
        len(head) == 512 and not head.strip(b"\0")
    )


class _Prefixed:
    """A read-once stream whose first bytes were already read."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self._head, self._rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0 or size >= len(self._head):
                head, self._head = self._head, b""
                return head + self._rest.read(-1 if size < 0 else size - len(head))
            head, self._head = self._head[:size], self._head[size:]
            return head
        return self._rest.read(size)


class UnreadableImage(ValueError):
    """The saved image is not what ``docker save`` writes: the gate cannot vouch for it."""


def _report(
    by_layer: dict[str, list[tuple[str, str]]], documents: dict[str, bytes], wanted: list[Needle]
) -> list[Hit]:
    try:
        manifests = json.loads(documents["manifest.json"])
        manifest = manifests[0]
        order = list(manifest["Layers"])
        config_name = manifest["Config"]
        config = json.loads(documents[config_name])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UnreadableImage(f"no readable manifest and config ({type(exc).__name__})") from None
    if len(manifests) != 1:
        raise UnreadableImage(f"{len(manifests)} images in one save (expected one)")
    missing = [name for name in order if name not in by_layer]
    if missing:
        raise UnreadableImage(f"layer(s) listed but not found: {', '.join(missing[:3])}")
    steps = [h.get("created_by", "") for h in config.get("history", []) if not h.get("empty_layer")]
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    hits: list[Hit] = []
    listed = [*order, *sorted(set(by_layer) - set(order))]  # unlisted layers are searched too
    for number, name in enumerate(listed, 1):
        step = steps[number - 1] if number - 1 < len(steps) else ""
        diff = diff_ids[number - 1][:19] + "..." if number - 1 < len(diff_ids) else "unlisted"
        label = f"layer {number}/{len(order)} ({diff}, {_short_step(_masked(step, wanted))})"
        for secret, path in by_layer[name]:
            hits.append(Hit(secret, label, path))
    for secret in sorted(_config_hits(documents[config_name], wanted)):
        hits.append(Hit(secret, "image config", "env, labels or a step's command (history)"))
    return hits


def _masked(text: str, wanted: Iterable[Needle]) -> str:
    """``text`` with every secret value in it replaced: what a hit may show."""
    for needle in wanted:
        text = text.replace(needle.value.decode(errors="replace"), "***")
    return text


def _config_hits(config: bytes, wanted: Iterable[Needle]) -> set[str]:
    # Go's JSON escapes <, > and &: search the decoded strings, not only the bytes.
    strings: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                strings.append(str(key))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads(config or b"{}"))
    text = "\n".join(strings).encode()
    return {n.name for n in wanted if n.value in config or n.value in text}


def _short_step(step: str) -> str:
    step = step.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").strip()
    return step if len(step) <= 60 else step[:57] + "..."
