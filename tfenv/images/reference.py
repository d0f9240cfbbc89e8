"""Parsing and checking image references such as ``registry:5000/ml/tf:2.17.0``."""

from __future__ import annotations

import re
from dataclasses import dataclass

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Docker's grammar: optional registry host[:port], then lowercase path components.
NAME_RE = re.compile(
    r"^(?:(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
FLOATING_TAGS = frozenset({"latest", "stable", "nightly", "main", "master", "edge"})


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str | None

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}" if self.tag else self.name


def parse_ref(text: str) -> ImageRef:
    """Split ``name[:tag]``; a colon before the last slash is a registry port."""
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        return ImageRef(text[:colon], text[colon + 1 :])
    return ImageRef(text, None)


def pinned_tag_problem(text: str) -> str | None:
    """Why ``text`` is not a pinnable ``name:tag`` reference, or ``None``."""
    if "@" in text:
        return "a name:tag reference (the digest belongs in the lock's 'digest' field)"
    ref = parse_ref(text)
    if not NAME_RE.fullmatch(ref.name):
        return "an image name such as registry.example.com/ml/tensorflow (lowercase)"
    if ref.tag is None:
        return "an explicit tag such as name:2.17.0 (no tag means the floating 'latest')"
    if not TAG_RE.fullmatch(ref.tag):
        return "a tag of letters, digits, '_', '.' and '-' (at most 128)"
    if ref.tag.lower() in FLOATING_TAGS:
        return f"a pinned version tag, not the floating tag {ref.tag!r}"
    return None
