"""The image lock: a YAML file mapping each pinned ``name:tag`` to its digest.

It is the single source of truth for digests. ``tfenv lock`` (re)writes it;
deploys read it and pull ``name@digest`` only.

Format::

    version: 1
    images:
      registry.example.com/ml/tensorflow:2.17.0-gpu:
        digest: sha256:<64 hex>          # manifest (or index) digest
        platform_digest: sha256:<64 hex> # optional: linux/amd64 manifest of an index
    promoted:                            # optional, written by `tfenv rollout` on completion
      registry.example.com/ml/tensorflow:2.17.0-gpu:
        to: registry.example.com/ml/tensorflow:2.18.0-gpu   # pinned under images:
        rollout: r-20261127-101500-1a2b                     # the rollout that promoted it

A container that declares a promoted ``name:tag`` runs its ``to`` image: a
completed rollout moves the fleet without rewriting anyone's group data.
Change the group data to the new tag when convenient; the entry then no
longer applies and ``tfenv lock`` keeps it only while it is still declared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfenv.errors import TfenvError
from tfenv.images.reference import DIGEST_RE, parse_ref, pinned_tag_problem

LOCK_VERSION = 1
ROLLOUT_ID_RE = re.compile(r"r-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}", re.ASCII)
SHOWN = 60  # at most this many characters of a value are echoed in an error
MAX_LOCK_BYTES = 4 * 1024 * 1024


class LockFormatError(TfenvError, ValueError):
    """What makes the YAML text itself unacceptable as a lock."""


class _StrictLoader(yaml.SafeLoader):
    """safe_load, plus: no aliases (anchors can multiply a small file), no
    duplicate keys (YAML would keep the last one silently), string keys only."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise LockFormatError(f"no YAML aliases (line {mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise LockFormatError(f"string keys only (line {line}: {_short(key)})")
            if key in seen:
                raise LockFormatError(f"each key once (line {line}: {_short(key)} again)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


@dataclass(frozen=True)
class LockedImage:
    reference: str  # name:tag
    digest: str
    platform_digest: str | None = None

    @property
    def name(self) -> str:
        return parse_ref(self.reference).name

    @property
    def pinned(self) -> str:
        """What deploys pull: ``name@sha256:...``."""
        return f"{self.name}@{self.platform_digest or self.digest}"


@dataclass(frozen=True)
class LockIssue:
    field: str
    expected: str
    got: str | None = None


@dataclass(frozen=True)
class Promotion:
    to: str  # name:tag, pinned under images
    rollout: str  # the rollout that promoted it


@dataclass(frozen=True)
class ImageLock:
    path: Path
    images: dict[str, LockedImage] = field(default_factory=dict)
    promoted: dict[str, Promotion] = field(default_factory=dict)

    def get(self, reference: str) -> LockedImage | None:
        return self.images.get(reference)

    def effective(self, reference: str) -> str:
        """The ``name:tag`` a container declaring ``reference`` runs (a rollout may
        have promoted another one in its place)."""
        promotion = self.promoted.get(reference)
        return promotion.to if promotion else reference

    def resolve(self, reference: str) -> LockedImage | None:
        """The locked image a container declaring ``reference`` runs."""
        return self.images.get(self.effective(reference))


def parse_lock(path: Path, data: Any) -> tuple[ImageLock, list[LockIssue]]:
    """Check and convert parsed YAML; every issue found, not just the first."""
    issues: list[LockIssue] = []
    images: dict[str, LockedImage] = {}
    if not isinstance(data, dict):
        return ImageLock(path), [LockIssue("", "a mapping with 'version' and 'images'")]
    unknown = sorted(set(data) - {"version", "images", "promoted"})
    for key in unknown:
        issues.append(
            LockIssue(key, "only the keys 'version', 'images' and 'promoted'", _short(key))
        )
    if data.get("version") != LOCK_VERSION:
        issues.append(
            LockIssue("version", f"lock format version {LOCK_VERSION}", _short(data.get("version")))
        )
    entries = data.get("images") or {}
    if not isinstance(entries, dict):
        issues.append(LockIssue("images", "a mapping of name:tag to {digest: ...}"))
        entries = {}
    for reference, entry in entries.items():
        where = f"images[{_short(reference)}]"
        why = pinned_tag_problem(str(reference))
        if why:
            issues.append(LockIssue(where, why, _short(reference)))
        if not isinstance(entry, dict):
            issues.append(LockIssue(where, "a mapping with 'digest'", _short(entry)))
            continue
        for key in sorted(set(entry) - {"digest", "platform_digest"}):
            issues.append(
                LockIssue(f"{where}.{key}", "only 'digest' and 'platform_digest'", _short(key))
            )
        digest = entry.get("digest")
        if digest is None:
            issues.append(
                LockIssue(f"{where}.digest", "a digest (sha256:<64 hex>); run: tfenv lock")
            )
            continue
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            issues.append(
                LockIssue(f"{where}.digest", "a digest of the form sha256:<64 hex>", _short(digest))
            )
            continue
        platform = entry.get("platform_digest")
        if platform is not None and (
            not isinstance(platform, str) or not DIGEST_RE.fullmatch(platform)
        ):
            issues.append(
                LockIssue(
                    f"{where}.platform_digest",
                    "a digest of the form sha256:<64 hex>",
                    _short(platform),
                )
            )
            continue
        images[str(reference)] = LockedImage(str(reference), digest, platform)
    promoted = _promotions(data.get("promoted") or {}, images, issues)
    return ImageLock(path, images, promoted), issues


def _promotions(
    entries: Any, images: dict[str, LockedImage], issues: list[LockIssue]
) -> dict[str, Promotion]:
    if not isinstance(entries, dict):
        issues.append(LockIssue("promoted", "a mapping of name:tag to {to: ..., rollout: ...}"))
        return {}
    promoted: dict[str, Promotion] = {}
    for reference, entry in entries.items():
        where = f"promoted[{_short(reference)}]"
        why = pinned_tag_problem(str(reference))
        if why:
            issues.append(LockIssue(where, why, _short(reference)))
            continue
        if not isinstance(entry, dict) or set(entry) != {"to", "rollout"}:
            issues.append(LockIssue(where, "a mapping with exactly 'to' and 'rollout'"))
            continue
        to, rollout = entry["to"], entry["rollout"]
        if not isinstance(to, str) or to not in images:
            issues.append(LockIssue(f"{where}.to", "a name:tag pinned under images", _short(to)))
            continue
        if to in entries:
            issues.append(LockIssue(f"{where}.to", "an image that is not promoted itself", to))
            continue
        if not isinstance(rollout, str) or not ROLLOUT_ID_RE.fullmatch(rollout):
            issues.append(LockIssue(f"{where}.rollout", "a rollout id", _short(rollout)))
            continue
        promoted[str(reference)] = Promotion(to, rollout)
    return promoted


def read_lock(path: Path) -> tuple[ImageLock, list[LockIssue]]:
    try:
        if path.stat().st_size > MAX_LOCK_BYTES:
            return ImageLock(path), [LockIssue("", f"a lock file under {MAX_LOCK_BYTES} bytes")]
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ImageLock(path), [LockIssue("", f"the lock file {path} to exist; run: tfenv lock")]
    except IsADirectoryError:
        return ImageLock(path), [LockIssue("", f"a file at {path}, not a directory")]
    except (OSError, UnicodeDecodeError) as exc:
        return ImageLock(path), [
            LockIssue("", f"a readable UTF-8 file at {path}", type(exc).__name__)
        ]
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except LockFormatError as exc:
        return ImageLock(path), [LockIssue("", str(exc))]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        return ImageLock(path), [LockIssue("", f"valid YAML{where}")]
    return parse_lock(path, data)


def dump_lock(images: dict[str, LockedImage], promoted: dict[str, Promotion] | None = None) -> str:
    """Render a lock file, sorted so that rewrites give small diffs."""
    body: dict[str, Any] = {"version": LOCK_VERSION, "images": {}}
    for reference in sorted(images):
        image = images[reference]
        entry = {"digest": image.digest}
        if image.platform_digest:
            entry["platform_digest"] = image.platform_digest
        body["images"][reference] = entry
    if promoted:
        body["promoted"] = {
            reference: {"to": promoted[reference].to, "rollout": promoted[reference].rollout}
            for reference in sorted(promoted)
        }
    header = "# Written by `tfenv lock`: each pinned name:tag and its digest.\n"
    return header + yaml.safe_dump(body, sort_keys=False)
