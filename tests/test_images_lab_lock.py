"""The lab's lock file: `tfenv lab up` rewrites its own images and keeps the rest
(team images that `tfenv image build` pushed and locked, whose blobs stay too)."""

from __future__ import annotations

from pathlib import Path

from tfenv.images.lock import LockedImage, read_lock
from tfenv.lab.tf_images import write_lab_lock

REGISTRY = "registry.lab.test:5000"
A, B, C = ("sha256:" + c * 64 for c in "abc")


def test_lab_up_keeps_team_images_and_replaces_its_own(tmp_path: Path) -> None:
    lock = tmp_path / "images.lock.yaml"
    lab1 = f"{REGISTRY}/tfenv/tensorflow:2.17.1-lab1"
    debian = f"{REGISTRY}/tfenv/debian:bookworm"
    team = f"{REGISTRY}/team/tf-dev:v1.0-tf2.17.1"
    write_lab_lock(lock, {lab1: LockedImage(lab1, A), debian: LockedImage(debian, A)})
    text = lock.read_text()
    assert text.startswith("# Written by `tfenv lab up` for the lab registry")
    # tfenv image build adds a team image; the next lab up pushes its own again.
    lock.write_text(text.replace("images:\n", f"images:\n  {team}:\n    digest: {C}\n", 1))
    write_lab_lock(lock, {lab1: LockedImage(lab1, B)})
    current, issues = read_lock(lock)
    assert issues == []
    assert {ref: image.digest for ref, image in current.images.items()} == {lab1: B, team: C}


def test_an_unreadable_lock_is_replaced_by_the_labs_own(tmp_path: Path) -> None:
    lock = tmp_path / "images.lock.yaml"
    lock.write_text("not: [a lock")
    lab1 = f"{REGISTRY}/tfenv/tensorflow:2.17.1-lab1"
    write_lab_lock(lock, {lab1: LockedImage(lab1, A)})
    assert list(read_lock(lock)[0].images) == [lab1]
