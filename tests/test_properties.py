"""Properties over generated data (hypothesis): what must hold for every input the
model accepts, not just the examples the other suites picked.

Example counts are kept small so the file runs in seconds; a failure prints the
smallest input that breaks the property.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st
from inspect_oracle import rendered
from pydantic import ValidationError
from test_container_drift import IMAGE, LAB_DEV, NFS, made_by

from tfenv.containers.desired import DesiredContainer, desired_container
from tfenv.containers.drift import drift
from tfenv.errors import TfenvError
from tfenv.images.lock import LOCK_VERSION, LockIssue, parse_lock, read_lock
from tfenv.images.reference import DIGEST_RE
from tfenv.model.spec import CAPABILITIES, ULIMIT_NAMES, Container, NfsMount
from tfenv.operations.nfs_mount import unit_text

# Modest counts, no example database left in the working tree, no deadline (the
# machine may be busy): a property that fails here fails on its first examples.
FEW = settings(max_examples=60, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

# What a shell treats specially outside quotes. Tokenized as separate words here,
# so a value that reached the command unquoted no longer reads back whole.
SHELL_SPECIAL = ";&|<>()$`*?[]{}~!#"


def shell_words(command: str) -> list[str]:
    """``shlex.split``, with the shell's special characters as word breaks."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=SHELL_SPECIAL)
    lexer.whitespace_split = True
    lexer.commenters = ""  # '#' is special above: an unquoted one is its own word
    return list(lexer)


def dev(**changes: Any) -> DesiredContainer:
    """The captured lab container's spec (tests/test_container_drift.py), changed."""
    container = Container.model_validate({**LAB_DEV, **changes})
    return desired_container("dev", container, IMAGE, NFS, {"jupyter_token_dev": "seal"})


def accepted(**changes: Any) -> DesiredContainer:
    """``dev(**changes)``, for changes the model accepts (others are not examples)."""
    try:
        return dev(**changes)
    except ValidationError:
        reject()


def values_after(flag: str, words: list[str]) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == flag]


# --- (a) a declared env or label value reaches docker run as one quoted word -----

ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)
LABEL_KEYS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,15}", fullmatch=True)  # LABEL_KEY
# Any text, with the characters a shell or a parser cares about made likely.
VALUES = st.text(max_size=30) | st.text(alphabet=" \t\n'\"\\$`;&|<>(){}[]*?~!#=,:", max_size=12)


@FEW
@given(env=st.dictionaries(ENV_NAMES, VALUES, max_size=4),
       labels=st.dictionaries(LABEL_KEYS, VALUES, max_size=4))  # fmt: skip
def test_env_and_label_values_reach_docker_run_whole(
    env: dict[str, str], labels: dict[str, str]
) -> None:
    assume(not any(key.startswith("tfenv.") for key in labels))  # tfenv's own names
    desired = accepted(env=env, labels=labels)
    command = rendered(desired)
    expected_env = [f"{name}={value}" for name, value in desired.env]
    all_labels = {**dict(desired.labels), **desired.tfenv_labels}
    expected_labels = [f"{key}={value}" for key, value in sorted(all_labels.items())]
    for words in (shlex.split(command), shell_words(command)):
        assert values_after("--env", words) == expected_env
        assert values_after("--label", words) == expected_labels
        assert words[-1] == IMAGE
    for name, value in env.items():  # every declared value, as declared
        assert f"{name}={value}" in expected_env
    for key, value in labels.items():
        assert f"{key}={value}" in expected_labels


# --- (b) the lock parser fails only with its own errors ---------------------------

DIGESTS = st.sampled_from([
    "sha256:" + "a" * 64, "sha256:" + "B" * 64, "sha256:abc", "md5:" + "c" * 32,
    "sha256:" + "d" * 64 + "\n",
]) | st.text(max_size=8)  # fmt: skip
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=12) | DIGESTS)  # fmt: skip
YAMLISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
REFERENCES = st.sampled_from([
    "r.test/tf:1.0", "r.test:5000/ml/tf:2.17.0", "r.test/tf:latest", "r.test/tf", "R.test/TF:1",
    "r.test/tf@sha256:" + "a" * 64, "",
])  # fmt: skip
ENTRIES = (
    st.dictionaries(
        st.sampled_from(["digest", "platform_digest", "other"]), DIGESTS | YAMLISH, max_size=3
    )
    | YAMLISH
)
# Mostly lock-shaped documents, so the checks past the first ones run too.
LOCKISH = st.fixed_dictionaries(
    {},
    optional={"version": st.sampled_from([1, 2, "1", None, 1.0]) | YAMLISH,
              "images": st.dictionaries(REFERENCES | st.text(max_size=8), ENTRIES, max_size=3)
              | YAMLISH,
              "extra": YAMLISH},
) | YAMLISH  # fmt: skip
# Pieces of YAML syntax (aliases, tags, flow and block collections, directives).
YAML_TOKENS = st.sampled_from([
    "version: 1\n", "images:\n", "  r.test/tf:1.0:\n", "    digest: ", "sha256:" + "a" * 64,
    "&a ", "*a", "!!python/object:os.system ", "!!binary ", "? ", "- ", ": ", "{", "}", "[", "]",
    ",", "'", '"', "\n", "  ", "\t", "%YAML 1.1\n", "---\n", "...\n", "<<: *a\n",
])  # fmt: skip
YAML_TEXT = st.lists(YAML_TOKENS | st.text(max_size=4), max_size=20).map("".join)


def check_lock_text(data: bytes) -> None:
    """``read_lock`` on a file holding ``data``: a lock and its issues, or tfenv's own
    error; and never an image with a malformed digest."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "images.lock.yaml"
        path.write_bytes(data)
        try:
            lock, issues = read_lock(path)
        except TfenvError:  # its own errors (LockFormatError is one) are allowed
            return
    assert all(isinstance(issue, LockIssue) for issue in issues)
    for image in lock.images.values():
        assert DIGEST_RE.fullmatch(image.digest)
        assert image.platform_digest is None or DIGEST_RE.fullmatch(image.platform_digest)


@FEW
@given(text=st.text(max_size=200) | YAML_TEXT)
def test_lock_parser_on_arbitrary_text(text: str) -> None:
    check_lock_text(text.encode())


@FEW
@given(data=st.binary(max_size=100))
def test_lock_parser_on_arbitrary_bytes(data: bytes) -> None:
    check_lock_text(data)


@FEW
@given(document=LOCKISH)
def test_lock_parser_on_yamlish_documents(document: Any) -> None:
    check_lock_text(yaml.safe_dump(document).encode())
    # parse_lock directly (string keys only: the loader refuses others), and a lock
    # without issues is exactly one of this format version.
    try:
        lock, issues = parse_lock(Path("images.lock.yaml"), document)
    except TfenvError:
        return
    if not issues:
        assert isinstance(document, dict) and document.get("version") == LOCK_VERSION
        assert set(document) <= {"version", "images"}
    for image in lock.images.values():
        assert DIGEST_RE.fullmatch(image.digest)
        assert image.platform_digest is None or DIGEST_RE.fullmatch(image.platform_digest)


# --- (c) a container made from a spec shows no drift against that spec -----------

PORTS = st.lists(
    st.fixed_dictionaries(
        {"container": st.integers(1, 65535), "host": st.integers(1, 65535)},
        optional={"address": st.sampled_from(["0.0.0.0", "127.0.0.1", "10.1.2.3", "::", "::1"]),
                  "protocol": st.sampled_from(["tcp", "udp"])},
    ),
    max_size=3,
    unique_by=lambda port: (port["host"], port.get("protocol", "tcp")),
)  # fmt: skip
GPUS = (
    st.sampled_from(["all", None])
    | st.integers(1, 8)
    | st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True)
)
SPECS = st.fixed_dictionaries(
    {},
    optional={
        "env": st.dictionaries(ENV_NAMES, VALUES, max_size=3),
        "labels": st.dictionaries(LABEL_KEYS.filter(lambda k: not k.startswith("tfenv.")),
                                  VALUES, max_size=3),
        "ports": PORTS,
        "gpus": GPUS,
        # Sizes Docker keeps as given (0 would mean Docker's default)
        "shm_size": st.sampled_from(["64m", "1g", "2G", "512m", "1073741824", "3k"]),
        "ulimits": st.dictionaries(st.sampled_from(sorted(ULIMIT_NAMES)),
                                   st.fixed_dictionaries({"soft": st.integers(-1, 2**20),
                                                          "hard": st.integers(-1, 2**20)}),
                                   max_size=2),
        "restart": st.sampled_from(["no", "always", "unless-stopped", "on-failure"]),
        # each capability in one of the spellings the model accepts
        "cap_add": st.lists(st.sampled_from(sorted(CAPABILITIES)).flatmap(
            lambda c: st.sampled_from([c, c.lower(), "CAP_" + c])), max_size=3),
        "read_only": st.booleans(),
        "ssh_port": st.integers(1024, 65535),
        "user": st.fixed_dictionaries({
            "name": st.from_regex(r"[a-z_][a-z0-9_-]{0,8}", fullmatch=True),
            "uid": st.integers(1, 2**31 - 2),
            "gid": st.integers(1, 2**31 - 2),
        }),
    },
)  # fmt: skip


@FEW
@given(changes=SPECS)
def test_a_container_made_from_a_spec_has_no_drift_against_it(changes: dict[str, Any]) -> None:
    desired = accepted(**changes)
    assert drift(desired, made_by(desired)) == []


# --- NFS mounts: no accepted value adds a line to the mount unit -----------------

# Clean values, then at most one of them with a line break (or a directive) added.
BREAKS = st.sampled_from(["\n", "\r", "\nExecStartPre=/bin/true", "\x0b", "\x85", " "])
NFS_FIELDS = st.fixed_dictionaries(
    {
        "server": st.from_regex(r"[a-z0-9][a-z0-9.-]{0,11}", fullmatch=True),
        "export": st.from_regex(r"/export(/[a-z0-9_-]{1,6}){0,2}/?", fullmatch=True),
        "mount_point": st.from_regex(r"/mnt(/[a-z0-9_-]{1,6}){1,2}", fullmatch=True),
        "options": st.lists(st.sampled_from(["hard", "nfsvers=4.1", "ro", "timeo=600"]),
                            max_size=3),
    }
)  # fmt: skip


@FEW
@given(
    fields=NFS_FIELDS,
    broken=st.sampled_from([None, "server", "export", "mount_point", "options"]),
    tail=BREAKS,
)
def test_an_accepted_nfs_mount_renders_a_unit_of_fixed_lines(
    fields: dict[str, Any], broken: str | None, tail: str
) -> None:
    if broken == "options":
        fields["options"] = [*fields["options"], "hard" + tail]
    elif broken is not None:
        fields[broken] += tail
    try:
        mount = NfsMount(**fields)
    except ValidationError:
        assert broken is not None  # only a broken value is refused
        return
    where = mount.mount_point.rstrip("/")
    lines = unit_text("ckpt", mount.server, mount.export, where, mount.options).splitlines()
    assert len(lines) == len(unit_text("ckpt", "s", "/e", "/m", ["hard"]).splitlines())
    assert f"What={fields['server']}:{fields['export']}" in lines
    assert f"Where={where}" in lines
    assert f"Options={','.join([*fields['options'], '_netdev'])}" in lines
