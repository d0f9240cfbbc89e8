"""Image references: splitting name:tag and why a reference cannot be pinned."""

from __future__ import annotations

import pytest

from tfenv.images.reference import FLOATING_TAGS, ImageRef, parse_ref, pinned_tag_problem

NOT_NAME_TAG = "a name:tag reference (the digest belongs in the lock's 'digest' field)"
BAD_NAME = "an image name such as registry.example.com/ml/tensorflow (lowercase)"
NO_TAG = "an explicit tag such as name:2.17.0 (no tag means the floating 'latest')"
BAD_TAG = "a tag of letters, digits, '_', '.' and '-' (at most 128)"


@pytest.mark.parametrize(
    ("text", "name", "tag"),
    [
        ("ubuntu", "ubuntu", None),  # neither ':' nor '/'
        ("ubuntu:22.04", "ubuntu", "22.04"),
        ("ml/tf", "ml/tf", None),
        ("registry.test:5000/ml/tf", "registry.test:5000/ml/tf", None),  # a port, not a tag
        ("registry.test:5000/ml/tf:2.17.0", "registry.test:5000/ml/tf", "2.17.0"),
        ("registry.test/ml/tf:2.17.0", "registry.test/ml/tf", "2.17.0"),
        ("a/b:c/d", "a/b:c/d", None),  # the colon is before the last slash
        ("name:", "name", ""),
    ],
)
def test_parse_ref(text: str, name: str, tag: str | None) -> None:
    assert parse_ref(text) == ImageRef(name, tag)


def test_str_of_a_reference() -> None:
    assert str(ImageRef("registry.test:5000/ml/tf", "2.17.0")) == "registry.test:5000/ml/tf:2.17.0"
    assert str(ImageRef("ubuntu", None)) == "ubuntu"
    assert str(ImageRef("ubuntu", "")) == "ubuntu"  # an empty tag is no tag


@pytest.mark.parametrize(
    "text",
    [
        "ubuntu:22.04",
        "registry.test:5000/ml/tf:2.17.0-gpu",
        "localhost/a_b/c__d/e--f.g:v1",
        "ml/tf:_x",
        "ml/tf:" + "a" * 128,
        "ml/tf:latest-1",
    ],
)
def test_pinnable_references(text: str) -> None:
    assert pinned_tag_problem(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ml/tf@sha256:" + "a" * 64, NOT_NAME_TAG),
        ("ml/tf:2.17@x", NOT_NAME_TAG),
        ("ml/TF:2.17", BAD_NAME),
        ("ml//tf:2.17", BAD_NAME),
        ("ml/tf_:2.17", BAD_NAME),
        ("registry.test:port/ml/tf:2.17", BAD_NAME),
        (":2.17", BAD_NAME),
        ("ml/tf", NO_TAG),
        ("registry.test:5000/ml/tf", NO_TAG),
        ("ml/tf:", BAD_TAG),
        ("ml/tf:.x", BAD_TAG),
        ("ml/tf:-x", BAD_TAG),
        ("ml/tf:a+b", BAD_TAG),
        ("ml/tf:" + "a" * 129, BAD_TAG),
        ("ml/tf:latest", "a pinned version tag, not the floating tag 'latest'"),
        ("ml/tf:Latest", "a pinned version tag, not the floating tag 'Latest'"),
    ],
)
def test_unpinnable_references(text: str, why: str) -> None:
    assert pinned_tag_problem(text) == why


@pytest.mark.parametrize("tag", sorted(FLOATING_TAGS))
def test_every_floating_tag_is_refused(tag: str) -> None:
    assert pinned_tag_problem(f"ml/tf:{tag.upper()}") == (
        f"a pinned version tag, not the floating tag {tag.upper()!r}"
    )


def test_the_floating_tags() -> None:
    assert {"latest", "stable", "nightly", "main", "master", "edge"} == FLOATING_TAGS
