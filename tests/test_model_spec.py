"""The typed fields of the declared data: each accepts what it should and says,
in words, what it expected otherwise."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from tfenv.model.spec import (
    SSH_KEY_TYPES,
    Capability,
    MountPath,
    Registry,
    Size,
    matching,
    ssh_public_key_problem,
)


def error_of(type_: Any, value: object) -> str:
    """The one message pydantic reports for ``value`` (without its 'Value error, ')."""
    with pytest.raises(ValidationError) as info:
        TypeAdapter(type_).validate_python(value)
    errors = info.value.errors()
    assert len(errors) == 1
    return errors[0]["msg"].removeprefix("Value error, ")


# --- matching: built here, at test time, so every call is the code under test ---


def test_a_matching_type_accepts_the_whole_value() -> None:
    word = matching(r"^[a-z]+$", "lowercase letters")
    assert TypeAdapter(word).validate_python("abc") == "abc"
    assert error_of(word, "abC") == "lowercase letters"
    assert error_of(word, "abc\n") == "lowercase letters"  # no trailing newline
    assert error_of(word, "") == "lowercase letters"


def test_a_matching_type_is_ascii_only() -> None:
    digits = matching(r"^\d+$", "digits")
    assert TypeAdapter(digits).validate_python("0123") == "0123"
    assert error_of(digits, "\u0661\u0662") == "digits"  # Arabic-Indic digits
    letters = matching(r"^\w+$", "word characters")
    assert error_of(letters, "caf\u00e9") == "word characters"


def test_a_matching_type_runs_its_extra_checks_on_the_value() -> None:
    seen: list[str] = []

    def no_x(value: str) -> None:
        seen.append(value)
        if "x" in value:
            raise ValueError("no x")

    word = matching(r"^[a-z]+$", "lowercase letters", no_x)
    assert TypeAdapter(word).validate_python("abc") == "abc"
    assert seen == ["abc"]
    assert error_of(word, "abx") == "no x"
    assert error_of(word, "ABX") == "lowercase letters"  # the pattern first
    assert seen == ["abc", "abx"]


# --- mount points, sizes, registry endpoints, capabilities ----------------


SYSTEM = "a directory of its own such as /mnt/checkpoints (not / or a system directory such as {})"


@pytest.mark.parametrize(
    ("value", "shown"),
    [("/", "/"), ("/etc", "/etc"), ("/etc/", "/etc"), ("/var/lib/docker/", "/var/lib/docker")],
)
def test_a_mount_point_is_never_a_system_directory(value: str, shown: str) -> None:
    assert error_of(MountPath, value) == SYSTEM.format(shown)


def test_a_mount_point_has_one_spelling() -> None:
    assert TypeAdapter(MountPath).validate_python("/mnt/ckpt") == "/mnt/ckpt"
    assert TypeAdapter(MountPath).validate_python("/e") == "/e"
    # a system directory's name inside a longer one is fine
    assert TypeAdapter(MountPath).validate_python("/optX") == "/optX"
    assert TypeAdapter(MountPath).validate_python("/etc-X") == "/etc-X"
    assert error_of(MountPath, "/mnt/dataX/") == (
        "an absolute path without a trailing '/' (such as /mnt/dataX)"
    )
    assert error_of(MountPath, "/mnt/ckpt/") == (
        "an absolute path without a trailing '/' (such as /mnt/ckpt)"
    )
    assert error_of(MountPath, "/e/") == "an absolute path without a trailing '/' (such as /e)"
    # "//" is the root again: the system-directory message, naming "/"
    assert error_of(MountPath, "//") == (
        "a directory of its own such as /mnt/checkpoints (not / or a system directory such as /)"
    )


@pytest.mark.parametrize("value", ["1", "8g", "512m", "64k", "1073741824", "8G", "2M", "10b"])
def test_sizes(value: str) -> None:
    assert TypeAdapter(Size).validate_python(value) == value


@pytest.mark.parametrize("value", ["0", "0g", "0G", "00m", "0B"])
def test_a_zero_size_is_refused(value: str) -> None:
    assert error_of(Size, value) == "a size above 0 (Docker reads 0 as its 64m default)"


def test_a_size_has_one_unit_letter() -> None:
    assert error_of(Size, "8gb") == "a size such as 8g, 512m or 1073741824"


@pytest.mark.parametrize(
    "endpoint", ["https://127.0.0.1:5443", "https://registry.test/", "https://[::1]:5000"]
)
def test_a_registry_endpoint_is_an_https_address(endpoint: str) -> None:
    registry = Registry(username="u", password_secret="pw", endpoint=endpoint)
    assert registry.endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://registry.test",
        "https://",
        "https://registry.test/v2",
        "https://reg istry.test",
        "https://registry.test\n",
        "registry.test",
        " https://registry.test",
    ],
)
def test_anything_else_is_refused_as_an_endpoint(endpoint: str) -> None:
    with pytest.raises(ValidationError) as info:
        Registry(username="u", password_secret="pw", endpoint=endpoint)
    assert [e["msg"] for e in info.value.errors()] == [
        "Value error, an https://HOST[:PORT] address"
    ]


def test_capabilities_are_named_with_or_without_cap() -> None:
    adapter = TypeAdapter(Capability)
    assert adapter.validate_python("net_admin") == "NET_ADMIN"
    assert adapter.validate_python("CAP_SYS_PTRACE") == "SYS_PTRACE"
    assert adapter.validate_python("cap_sys_nice") == "SYS_NICE"
    assert error_of(Capability, "CAP_ALL") == (
        "a Linux capability name such as NET_ADMIN or SYS_PTRACE"
    )


# --- ssh_public_key_problem ------------------------------------------------


def key_blob(key_type: bytes, length: int | None = None, rest: bytes = b"\x00" * 8) -> str:
    """An OpenSSH key blob: its type as a length-prefixed string, then key data."""
    size = len(key_type) if length is None else length
    return base64.b64encode(size.to_bytes(4, "big") + key_type + rest).decode()


ONE_LINE = "one OpenSSH public key line: '<type> <base64> [comment]'"


def test_well_formed_keys_of_every_type() -> None:
    for key_type in SSH_KEY_TYPES:
        blob = key_blob(key_type.encode())
        assert ssh_public_key_problem(f"{key_type} {blob}") is None
        assert ssh_public_key_problem(f"  {key_type}  {blob} me@laptop with spaces \n") is None


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ssh-ed25519",
        f"ssh-ed25519 {key_blob(b'ssh-ed25519')}\nssh-ed25519 {key_blob(b'ssh-ed25519')}",
        f"ssh-ed25519 {key_blob(b'ssh-ed25519')} a\nb",
    ],
)
def test_one_line_of_type_and_data(key: str) -> None:
    assert ssh_public_key_problem(key) == ONE_LINE


def test_a_known_key_type() -> None:
    assert ssh_public_key_problem(f"ssh-dss {key_blob(b'ssh-dss')}") == (
        "a key type among " + ", ".join(SSH_KEY_TYPES)
    )


@pytest.mark.parametrize("blob", ["AAAA!!!!", "AAAAC3NzaC1lZDI1NTE", "not base64"])
def test_base64_key_data(blob: str) -> None:
    assert ssh_public_key_problem(f"ssh-ed25519 {blob}") == "base64 key data"


@pytest.mark.parametrize(
    "blob",
    [
        key_blob(b"ssh-rsa"),  # another type's data
        key_blob(b"ssh-ed25519", length=0),
        key_blob(b"ssh-ed25519", length=1),
        key_blob(b"ssh-ed25519", length=12),
        key_blob(b"\xffsh-ed25519"),  # not ASCII
        key_blob(b"ssh-ed2551\xff"),
        "AAAA",  # three zero bytes
        base64.b64encode(b"\x00\x00\x0b").decode(),
        base64.b64encode(b"\x00\x00\x00\x0b").decode(),
        base64.b64encode(b"\x00\x00\x00\x0bssh").decode(),
    ],
)
def test_key_data_that_encodes_its_type(blob: str) -> None:
    assert ssh_public_key_problem(f"ssh-ed25519 {blob}") == (
        "key data that encodes a ssh-ed25519 key"
    )
