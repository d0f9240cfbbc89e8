"""The image lock file: strict YAML, every issue reported, and the text `tfenv lock` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfenv.images.lock import (
    MAX_LOCK_BYTES,
    ImageLock,
    LockedImage,
    LockIssue,
    dump_lock,
    parse_lock,
    read_lock,
)

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
REF = "registry.test:5000/ml/tf:2.17.0"
WHERE = f"images[{REF!r}]"


def read(tmp_path: Path, text: str | bytes) -> tuple[ImageLock, list[LockIssue]]:
    path = tmp_path / "images.lock.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return read_lock(path)


def test_a_good_lock(tmp_path: Path) -> None:
    lock, issues = read(
        tmp_path,
        f"version: 1\nimages:\n  {REF}:\n    digest: {A}\n"
        f"  ubuntu:22.04:\n    digest: {B}\n    platform_digest: {C}\n",
    )
    assert issues == []
    assert lock == ImageLock(
        tmp_path / "images.lock.yaml",
        {REF: LockedImage(REF, A), "ubuntu:22.04": LockedImage("ubuntu:22.04", B, C)},
    )
    assert lock.get(REF) == LockedImage(REF, A, None)
    assert lock.get("ubuntu:24.04") is None


def test_pinned_is_the_platform_digest_when_there_is_one() -> None:
    assert LockedImage(REF, A).pinned == f"registry.test:5000/ml/tf@{A}"
    assert LockedImage(REF, A, C).pinned == f"registry.test:5000/ml/tf@{C}"
    assert LockedImage(REF, A).name == "registry.test:5000/ml/tf"


def test_an_empty_images_mapping_is_a_lock_with_no_images(tmp_path: Path) -> None:
    assert read(tmp_path, "version: 1\nimages:\n") == (ImageLock(tmp_path / "images.lock.yaml"), [])


# --- the strict loader -------------------------------------------------------------


def test_aliases_are_refused_with_their_line(tmp_path: Path) -> None:
    lock, issues = read(tmp_path, "version: 1\nimages: &x {}\nother: *x\n")
    assert issues == [LockIssue("", "no YAML aliases (line 3)")]
    assert lock == ImageLock(tmp_path / "images.lock.yaml")


def test_non_string_keys_are_refused(tmp_path: Path) -> None:
    _, issues = read(tmp_path, "version: 1\n7: x\nimages: {}\n")
    assert issues == [LockIssue("", "string keys only (line 2: 7)")]


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    _, issues = read(tmp_path, f"version: 1\nimages:\n  {REF}: {{digest: {A}}}\nversion: 1\n")
    assert issues == [LockIssue("", "each key once (line 4: 'version' again)")]


def test_duplicates_are_found_level_by_level(tmp_path: Path) -> None:
    # A sibling's duplicate (line 7) is reached before a deeper one (line 5):
    # PyYAML builds nested mappings breadth first.
    text = "images:\n  a:\n    x:\n      k: 1\n      k: 2\n  b:\n    j: 1\n    j: 2\n"
    _, issues = read(tmp_path, text)
    assert issues == [LockIssue("", "each key once (line 8: 'j' again)")]


def test_long_keys_are_shortened_in_messages(tmp_path: Path) -> None:
    # repr of 58 characters plus quotes is exactly 60: shown whole; one more is cut.
    fits, cut = "k" * 58, "k" * 59
    _, issues = read(tmp_path, f"version: 1\nimages: {{}}\n{fits}: 1\n")
    keys = "only the keys 'version', 'images' and 'promoted'"
    assert issues == [LockIssue(fits, keys, repr(fits))]
    _, issues = read(tmp_path, f"version: 1\nimages: {{}}\n{cut}: 1\n")
    assert issues == [
        LockIssue(cut, "only the keys 'version', 'images' and 'promoted'", "'" + "k" * 56 + "...")
    ]


def test_invalid_yaml_gives_its_line(tmp_path: Path) -> None:
    lock, issues = read(tmp_path, "version: 1\nimages:\n  a: [1\n  b: 2\n")
    assert issues == [LockIssue("", "valid YAML (line 4)")]
    assert lock == ImageLock(tmp_path / "images.lock.yaml")


def test_an_error_without_a_line(tmp_path: Path) -> None:
    # A control character: PyYAML's reader error carries no problem_mark.
    lock, issues = read(tmp_path, "version: 1\x07\n")
    assert issues == [LockIssue("", "valid YAML")]
    assert lock == ImageLock(tmp_path / "images.lock.yaml")


# --- the file itself ----------------------------------------------------------------


def test_a_missing_lock(tmp_path: Path) -> None:
    path = tmp_path / "none.yaml"
    assert read_lock(path) == (
        ImageLock(path),
        [LockIssue("", f"the lock file {path} to exist; run: tfenv lock")],
    )


def test_a_directory(tmp_path: Path) -> None:
    assert read_lock(tmp_path) == (
        ImageLock(tmp_path),
        [LockIssue("", f"a file at {tmp_path}, not a directory")],
    )


def test_a_path_through_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "lock.yaml"
    assert read_lock(path) == (
        ImageLock(path),
        [LockIssue("", f"a readable UTF-8 file at {path}", "NotADirectoryError")],
    )


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    lock, issues = read(tmp_path, b"version: 1\n# \xff\n")
    path = tmp_path / "images.lock.yaml"
    assert (lock, issues) == (
        ImageLock(path),
        [LockIssue("", f"a readable UTF-8 file at {path}", "UnicodeDecodeError")],
    )


def test_a_lock_of_exactly_the_size_limit_is_read(tmp_path: Path) -> None:
    # Invalid UTF-8 so that it is read (and refused) without YAML parsing 4 MiB.
    _, issues = read(tmp_path, b"\xff" * MAX_LOCK_BYTES)
    assert [issue.got for issue in issues] == ["UnicodeDecodeError"]


def test_a_lock_over_the_size_limit(tmp_path: Path) -> None:
    lock, issues = read(tmp_path, b"#" * (MAX_LOCK_BYTES + 1))
    assert (lock, issues) == (
        ImageLock(tmp_path / "images.lock.yaml"),
        [LockIssue("", "a lock file under 4194304 bytes")],
    )


# --- the structure ------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, [], "version: 1", 1])
def test_not_a_mapping(data: object) -> None:
    assert parse_lock(Path("l.yaml"), data) == (
        ImageLock(Path("l.yaml")),
        [LockIssue("", "a mapping with 'version' and 'images'")],
    )


def test_unknown_keys_and_version() -> None:
    data = {"zeta": 1, "alpha": 2, "images": {REF: {"digest": A}}}
    lock, issues = parse_lock(Path("l.yaml"), data)
    assert issues == [
        LockIssue("alpha", "only the keys 'version', 'images' and 'promoted'", "'alpha'"),
        LockIssue("zeta", "only the keys 'version', 'images' and 'promoted'", "'zeta'"),
        LockIssue("version", "lock format version 1", "None"),
    ]
    assert lock == ImageLock(Path("l.yaml"), {REF: LockedImage(REF, A)})


def test_wrong_version() -> None:
    _, issues = parse_lock(Path("l.yaml"), {"version": 2, "images": {}})
    assert issues == [LockIssue("version", "lock format version 1", "2")]


def test_images_not_a_mapping() -> None:
    assert parse_lock(Path("l.yaml"), {"version": 1, "images": [REF]}) == (
        ImageLock(Path("l.yaml")),
        [LockIssue("images", "a mapping of name:tag to {digest: ...}")],
    )


def test_every_entry_issue_is_reported_and_good_entries_kept() -> None:
    images = {
        "ml/tf:latest": {"digest": A},  # floating tag: reported, still kept
        "ml/a:1": ["not", "a", "mapping"],
        "ml/b:1": {"digest": A, "zz": 1, "size": 2},
        "ml/c:1": {},
        "ml/d:1": {"digest": "sha256:short"},
        "ml/e:1": {"digest": 7},
        "ml/f:1": {"digest": A, "platform_digest": "md5:x"},
        "ml/g:1": {"digest": A, "platform_digest": 5},
        "ml/h:1": {"digest": B, "platform_digest": C},
        "ml/i:1": {"digest": C, "platform_digest": None},
    }
    lock, issues = parse_lock(Path("l.yaml"), {"version": 1, "images": images})
    assert issues == [
        LockIssue(
            "images['ml/tf:latest']",
            "a pinned version tag, not the floating tag 'latest'",
            "'ml/tf:latest'",
        ),
        LockIssue("images['ml/a:1']", "a mapping with 'digest'", "['not', 'a', 'mapping']"),
        LockIssue("images['ml/b:1'].size", "only 'digest' and 'platform_digest'", "'size'"),
        LockIssue("images['ml/b:1'].zz", "only 'digest' and 'platform_digest'", "'zz'"),
        LockIssue("images['ml/c:1'].digest", "a digest (sha256:<64 hex>); run: tfenv lock"),
        LockIssue(
            "images['ml/d:1'].digest", "a digest of the form sha256:<64 hex>", "'sha256:short'"
        ),
        LockIssue("images['ml/e:1'].digest", "a digest of the form sha256:<64 hex>", "7"),
        LockIssue(
            "images['ml/f:1'].platform_digest", "a digest of the form sha256:<64 hex>", "'md5:x'"
        ),
        LockIssue("images['ml/g:1'].platform_digest", "a digest of the form sha256:<64 hex>", "5"),
    ]
    assert lock.images == {
        "ml/tf:latest": LockedImage("ml/tf:latest", A),
        "ml/b:1": LockedImage("ml/b:1", A),
        "ml/h:1": LockedImage("ml/h:1", B, C),
        "ml/i:1": LockedImage("ml/i:1", C),
    }


def test_an_entry_issue_does_not_stop_the_next_entries() -> None:
    # One bad entry of each kind, each followed by a good one that must still be read.
    for bad in (["x"], {}, {"digest": "x"}, {"digest": A, "platform_digest": "x"}):
        lock, issues = parse_lock(
            Path("l.yaml"), {"version": 1, "images": {"ml/a:1": bad, "ml/b:1": {"digest": B}}}
        )
        assert len(issues) == 1
        assert lock.images == {"ml/b:1": LockedImage("ml/b:1", B)}


def test_a_long_bad_entry_is_shortened() -> None:
    entry = ["x" * 100]
    _, issues = parse_lock(Path("l.yaml"), {"version": 1, "images": {"ml/a:1": entry}})
    assert issues == [
        LockIssue("images['ml/a:1']", "a mapping with 'digest'", repr(entry)[:57] + "...")
    ]


# --- writing ------------------------------------------------------------------------


def test_dump_lock_text() -> None:
    images = {
        "ubuntu:22.04": LockedImage("ubuntu:22.04", B, C),
        REF: LockedImage(REF, A),
    }
    assert dump_lock(images) == (
        "# Written by `tfenv lock`: each pinned name:tag and its digest.\n"
        "version: 1\n"
        "images:\n"
        f"  {REF}:\n"
        f"    digest: {A}\n"
        "  ubuntu:22.04:\n"
        f"    digest: {B}\n"
        f"    platform_digest: {C}\n"
    )


def test_dump_lock_of_nothing() -> None:
    assert dump_lock({}) == (
        "# Written by `tfenv lock`: each pinned name:tag and its digest.\nversion: 1\nimages: {}\n"
    )


def test_dump_then_read_round_trips(tmp_path: Path) -> None:
    images = {REF: LockedImage(REF, A), "ubuntu:22.04": LockedImage("ubuntu:22.04", B, C)}
    lock, issues = read(tmp_path, dump_lock(images))
    assert (lock.images, issues) == (images, [])
