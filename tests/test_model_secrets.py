"""Secret references: what is accepted, every message an operator reads when a
secret cannot be used, and that a resolved value never leaks."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from tfenv.model.secrets import (
    SecretRef,
    SecretUnavailable,
    SecretValue,
    check_secret,
    generate_secret_file,
    looks_like_a_value,
    read_secret,
)


def secret_file(directory: Path, text: str, mode: int = 0o600, name: str = "token") -> Path:
    path = directory / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


# --- SecretRef -------------------------------------------------------------


def test_a_reference_names_exactly_one_source() -> None:
    assert SecretRef(env="VAR").kind == "env"
    assert SecretRef(file="secrets/x").kind == "file"
    with pytest.raises(ValidationError, match="exactly one of 'env' or 'file'"):
        SecretRef()
    with pytest.raises(ValidationError, match="exactly one of 'env' or 'file'"):
        SecretRef(env="VAR", file="x")
    with pytest.raises(ValidationError, match="'generate' only together with 'file'"):
        SecretRef(env="VAR", generate=True)
    assert SecretRef(file="x", generate=True).generate is True


def test_a_reference_describes_where_its_value_comes_from() -> None:
    assert SecretRef(env="REG_PW").describe() == "environment variable REG_PW"
    assert SecretRef(file="secrets/jupyter").describe() == "file secrets/jupyter"


# --- SecretValue -----------------------------------------------------------


def test_a_value_is_shown_by_name_only() -> None:
    value = SecretValue("registry", "hunter2")
    assert value.name == "registry"
    assert value.reveal() == "hunter2"
    assert repr(value) == "SecretValue(name='registry', value='***')"
    assert str(value) == "SecretValue(name='registry', value='***')"


def test_values_compare_and_hash_by_value() -> None:
    assert SecretValue("a", "same") == SecretValue("b", "same")
    assert SecretValue("a", "one") != SecretValue("a", "two")
    assert SecretValue("a", "same") != "same"  # never equal to the bare string
    assert hash(SecretValue("a", "same")) == hash(SecretValue("b", "same"))
    assert hash(SecretValue("a", "same")) != hash("same")
    # distinct values spread over a dict's buckets (not one constant hash)
    assert hash(SecretValue("a", "one")) != hash(SecretValue("a", "two"))
    assert len({SecretValue("a", "x"), SecretValue("b", "x"), SecretValue("c", "y")}) == 2


def test_a_value_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match=r"^SecretValue cannot be pickled$"):
        pickle.dumps(SecretValue("a", "hunter2"))


# --- looks_like_a_value ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["abc123def456", "Zq8yX2Pw3kLmNo", "0123456789ab"],
)
def test_long_mixed_letters_and_digits_look_like_a_pasted_secret(text: str) -> None:
    assert looks_like_a_value(text)


@pytest.mark.parametrize(
    "text",
    [
        "abc123def45",  # 11 characters: short enough to be a name
        "abcdefghijklmnop",  # no digit
        "0123456789012345",  # no letter
        "secrets/abc123def456",  # a directory
        "abc123def456.txt",  # an extension
        "/abc123def456xyz",
        "abc123.def456xyz",
        "",
    ],
)
def test_paths_and_short_or_uniform_words_do_not(text: str) -> None:
    assert not looks_like_a_value(text)


# --- check_secret / read_secret: environment variables ---------------------


def test_an_unset_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TFENV_T_UNSET", raising=False)
    ref = SecretRef(env="TFENV_T_UNSET")
    assert check_secret("pw", ref, tmp_path) == (
        "environment variable TFENV_T_UNSET to be set on the control machine (it is not)"
    )
    with pytest.raises(SecretUnavailable) as info:
        read_secret("pw", ref, tmp_path)
    assert str(info.value) == (
        "secret 'pw': expected environment variable TFENV_T_UNSET to be set on the "
        "control machine (it is not)"
    )


def test_an_empty_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TFENV_T_EMPTY", "")
    ref = SecretRef(env="TFENV_T_EMPTY")
    assert check_secret("pw", ref, tmp_path) == "environment variable TFENV_T_EMPTY to be non-empty"
    with pytest.raises(SecretUnavailable, match=r"^secret 'pw': expected environment variable"):
        read_secret("pw", ref, tmp_path)


def test_an_environment_variable_is_read_as_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TFENV_T_PW", "s3cret value\n")
    ref = SecretRef(env="TFENV_T_PW")
    assert check_secret("pw", ref, tmp_path) is None
    value = read_secret("registry_pw", ref, tmp_path)
    assert value.name == "registry_pw"
    assert value.reveal() == "s3cret value\n"  # environment values are never trimmed


def test_a_one_character_environment_variable_is_enough(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TFENV_T_X", "XXXX")
    assert check_secret("pw", SecretRef(env="TFENV_T_X"), tmp_path) is None


# --- check_secret / read_secret: files -------------------------------------


def test_a_file_is_read_without_its_final_newline(tmp_path: Path) -> None:
    secret_file(tmp_path, "line one\nline two\n\n")
    ref = SecretRef(file="token")
    assert check_secret("tok", ref, tmp_path) is None
    value = read_secret("tok", ref, tmp_path)
    assert value.name == "tok"
    assert value.reveal() == "line one\nline two\n"  # only one newline goes


def test_a_file_without_a_final_newline_is_read_whole(tmp_path: Path) -> None:
    secret_file(tmp_path, "abc")
    assert read_secret("tok", SecretRef(file="token"), tmp_path).reveal() == "abc"


def test_a_one_byte_file_is_enough(tmp_path: Path) -> None:
    secret_file(tmp_path, "x")
    assert check_secret("tok", SecretRef(file="token"), tmp_path) is None
    assert read_secret("tok", SecretRef(file="token"), tmp_path).reveal() == "x"


def test_an_absolute_path_is_used_as_is(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "abs\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert read_secret("tok", SecretRef(file=str(path)), elsewhere).reveal() == "abs"


def test_a_missing_file(tmp_path: Path) -> None:
    ref = SecretRef(file="secrets/missing")
    why = f"file {tmp_path / 'secrets/missing'} to exist (it does not)"
    assert check_secret("tok", ref, tmp_path) == why
    with pytest.raises(SecretUnavailable) as info:
        read_secret("tok", ref, tmp_path)
    assert str(info.value) == f"secret 'tok': expected {why}"


def test_a_missing_file_tfenv_may_generate_says_how(tmp_path: Path) -> None:
    ref = SecretRef(file="secrets/jupyter", generate=True)
    assert check_secret("tok", ref, tmp_path) == (
        f"file {tmp_path / 'secrets/jupyter'} to exist "
        "(it does not; run: tfenv secrets init INVENTORY)"
    )


def test_a_missing_file_named_like_a_token_is_not_echoed(tmp_path: Path) -> None:
    pasted = "Zq8yX2Pw3kLmNo"
    why = check_secret("tok", SecretRef(file=pasted), tmp_path)
    assert why == (
        "the path of a file holding the secret (no such file; the value given is not "
        "shown, as it looks like a pasted secret rather than a path)"
    )
    with pytest.raises(SecretUnavailable) as info:
        read_secret("tok", SecretRef(file=pasted), tmp_path)
    assert pasted not in str(info.value)
    assert str(info.value) == f"secret 'tok': expected {why}"


def test_a_file_others_can_read(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "x\n", mode=0o640)
    assert check_secret("tok", SecretRef(file="token"), tmp_path) == (
        f"file {path} to be readable only by its owner (mode is 0640; run: chmod 600 {path})"
    )
    secret_file(tmp_path, "x\n", mode=0o604)
    assert "(mode is 0604;" in (check_secret("tok", SecretRef(file="token"), tmp_path) or "")


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir(mode=0o700)
    assert check_secret("tok", SecretRef(file="dir"), tmp_path) == (
        f"file {tmp_path / 'dir'} to be a regular file"
    )


def test_an_empty_file(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "")
    assert check_secret("tok", SecretRef(file="token"), tmp_path) == f"file {path} to be non-empty"


def test_a_file_this_user_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file(tmp_path, "x\n")
    real_stat = Path.stat

    # Root reads every file, so the refusal is simulated for this one path.
    def stat_refused(self: Path, *args, **kwargs) -> os.stat_result:
        if self == tmp_path / "token":
            raise PermissionError(13, "Permission denied")
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat_refused)
    assert check_secret("tok", SecretRef(file="token"), tmp_path) == (
        f"file {tmp_path / 'token'} to be readable by this user"
    )


def test_a_file_owned_by_someone_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file(tmp_path, "x\n")
    # Another user's file, seen from this one: pretend to run as another uid.
    other = os.geteuid() + 1
    monkeypatch.setattr(os, "geteuid", lambda: other)
    assert check_secret("tok", SecretRef(file="token"), tmp_path) == (
        f"file {tmp_path / 'token'} to be owned by the user running tfenv (uid {other})"
    )


# --- generate_secret_file --------------------------------------------------


def test_a_missing_generated_file_is_written_0600(tmp_path: Path) -> None:
    ref = SecretRef(file="secrets/new/jupyter", generate=True)
    path = generate_secret_file(ref, tmp_path)
    assert path == tmp_path / "secrets/new/jupyter"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert len(text) == 44  # token_urlsafe(32): 43 characters, and the newline
    assert check_secret("jupyter", ref, tmp_path) is None
    assert read_secret("jupyter", ref, tmp_path).reveal() == text[:-1]
    # A second run leaves the token alone.
    assert generate_secret_file(ref, tmp_path) is None
    assert path.read_text() == text
    other = generate_secret_file(SecretRef(file="secrets/new/other", generate=True), tmp_path)
    assert other is not None and other.read_text() != text


def test_only_references_that_may_be_generated_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert generate_secret_file(SecretRef(file="secrets/pw"), tmp_path) is None
    assert not (tmp_path / "secrets").exists()
    monkeypatch.setenv("TFENV_T_PW", "x")
    assert generate_secret_file(SecretRef(env="TFENV_T_PW"), tmp_path) is None
    assert list(tmp_path.iterdir()) == []
