"""Where the fleet declares ``nvidia_driver``, and writing a new version there.

A driver rollout writes the new version into the group data only when it
completes. Which file declares a host's driver follows pyinfra's own order: a
host's groups (the last one wins, ``all`` last of all), and for one group the
``group_data/`` folder beside the inventory over the one in the working
directory. The file is changed in place, the version string (and the branch, if
it changes) and nothing else, so comments and layout stay as the person wrote
them. A declaration that is not a plain literal is refused at ``start``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tfenv.reconcile.files import write_atomic

KEY = "nvidia_driver"


class DeclarationError(Exception):
    pass


@dataclass(frozen=True)
class Literal:
    line: int  # 1-based
    start: int  # column offsets (characters) in that line
    end: int
    value: str


def _folders(inventory: Path, base: Path) -> list[Path]:
    """pyinfra's group data folders, lowest precedence first."""
    folders = [base / "group_data"]
    beside = inventory.resolve().parent / "group_data"
    if beside != folders[0].resolve():
        folders.append(beside)
    return folders


def declaring_file(inventory: Path, base: Path, groups: list[str], host_data: dict) -> Path:
    """The group data file whose ``nvidia_driver`` a host with ``groups`` uses."""
    if KEY in host_data:
        raise DeclarationError(
            f"{KEY} is set for the host itself in {inventory}: a rollout only writes group "
            "data; move it to a group data file"
        )
    for group in [*reversed(groups), "all"]:
        for folder in reversed(_folders(inventory, base)):
            path = folder / f"{group}.py"
            if path.is_file() and _assignment(path) is not None:
                return path
    raise DeclarationError(f"no group data file of groups {', '.join(groups) or 'all'} "
                           f"assigns {KEY}")  # fmt: skip


def _assignment(path: Path) -> ast.Dict | None:
    """The one ``nvidia_driver = {...}`` in ``path`` (module level, or under an ``if`` as
    in the lab's data). Two or more are refused: which one holds is not plain to read."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])  # fmt: skip
        if any(isinstance(t, ast.Name) and t.id == KEY for t in targets):
            value = node.value  # type: ignore[union-attr]
            if not isinstance(value, ast.Dict):
                raise DeclarationError(f"{path}: {KEY} is not a plain dict literal")
            found.append(value)
    if len(found) > 1:
        lines = ", ".join(str(v.lineno) for v in found)
        raise DeclarationError(f"{path}: {KEY} is assigned {len(found)} times (lines {lines}); "
                               "keep one, so the rollout knows which one to write")  # fmt: skip
    return found[0] if found else None


def _literals(path: Path) -> dict[str, Literal]:
    mapping = _assignment(path)
    if mapping is None:
        raise DeclarationError(f"{path}: no {KEY} assignment")
    lines = path.read_bytes().splitlines(keepends=True)
    found = {}
    for key, value in zip(mapping.keys, mapping.values, strict=True):
        if not (isinstance(key, ast.Constant) and key.value in ("version", "branch")):
            continue
        plain = f"{KEY}[{key.value!r}] is not a plain string"
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            raise DeclarationError(f"{path}: {plain}")
        if value.lineno != value.end_lineno:
            raise DeclarationError(f"{path}: {KEY}[{key.value!r}] spans lines")
        # Column offsets are UTF-8 byte offsets: the source is handled as bytes.
        start, end = value.col_offset, value.end_col_offset or 0
        source = lines[value.lineno - 1][start:end]
        if not (len(source) >= 2 and source[:1] in (b'"', b"'") and source[-1:] == source[:1]
                and source[1:-1] == value.value.encode()):  # fmt: skip
            raise DeclarationError(f"{path}: {plain} (no prefix, no escapes)")
        found[key.value] = Literal(value.lineno, start, end, value.value)
    if "version" not in found:
        raise DeclarationError(f"{path}: {KEY} has no 'version'")
    return found


def check_declared(path: Path, version: str) -> None:
    """Refuse unless ``path`` declares driver ``version`` as a plain literal."""
    literals = _literals(path)
    if literals["version"].value != version:
        raise DeclarationError(f"{path}: {KEY} version is {literals['version'].value!r}, the "
                               f"hosts' data says {version!r}")  # fmt: skip


def write_version(path: Path, old: str, new: str) -> None:
    """``path``'s driver version ``old`` -> ``new`` (and its branch, when that changes)."""
    literals = _literals(path)
    if literals["version"].value == new:
        return  # already written (a completion run twice)
    check_declared(path, old)
    lines = path.read_bytes().splitlines(keepends=True)
    changes = [(literals["version"], new)]
    branch = new.split(".")[0]
    if "branch" in literals and literals["branch"].value != branch:
        changes.append((literals["branch"], branch))
    # Right to left within a line, so earlier offsets stay valid.
    for literal, value in sorted(changes, key=lambda c: (c[0].line, c[0].start), reverse=True):
        text = lines[literal.line - 1]
        quote = text[literal.start : literal.start + 1]
        lines[literal.line - 1] = (text[: literal.start] + quote + value.encode() + quote
                                   + text[literal.end :])  # fmt: skip
    result = b"".join(lines)
    try:
        written = ast.parse(result)
    except SyntaxError as exc:  # never: only quoted ASCII digits changed
        raise DeclarationError(
            f"{path}: the rewrite would not parse ({exc}); not written"
        ) from None
    del written
    write_atomic(path, result.decode("utf-8"), mode=path.stat().st_mode & 0o777)
