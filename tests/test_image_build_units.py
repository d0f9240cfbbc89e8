"""`tfenv image build|lock-deps` without Docker: the spec, the pip requirements
file, the secret gate over a synthetic ``docker save`` stream, the pure parts of
the build (Dockerfile, labels, trivy summary, lock entry), planning against a
temporary inventory, and the CLI's answer to bad input."""

from __future__ import annotations

import copy
import datetime
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import DIGEST_A, DIGEST_B, GOOD_DATA, SECRET_ENV_VALUE, SECRET_FILE_VALUE
from conftest import prepare_workdir as prepare_secrets_and_lock

from tfenv.cli import main
from tfenv.images import build, layers, requirements
from tfenv.images.build import (
    BuildError,
    Plan,
    labels,
    plan_build,
    render_dockerfile,
    scan_mode,
    summarise_trivy,
    write_lock_entry,
)
from tfenv.images.dev_files import dev_file
from tfenv.images.layers import Hit, Needle, scan_saved_image, search_stream
from tfenv.images.lock import ImageLock, LockedImage, Promotion, dump_lock, read_lock
from tfenv.images.requirements import Pinned, RequirementsError
from tfenv.images.spec import MAX_SPEC_BYTES, ImageSpec, LoadedSpec, file_problems, load_spec
from tfenv.model.problems import Problem
from tfenv.model.spec import Registry

H1 = "1" * 64
H2 = "2" * 64
H3 = "3" * 64
DIGEST_C = "sha256:" + "c" * 64
PUSH_REGISTRY = "registry.test:5000"  # declared in GOOD_DATA's registries

SPEC: dict[str, Any] = {
    "inventory": "inventory.py",
    "name": f"{PUSH_REGISTRY}/team/tf-dev",
    "version": "v1.2",
    "tf_version": "2.17.1",
    "base": f"{PUSH_REGISTRY}/ml/tf:2.17.0",  # pinned in conftest's LOCK_TEXT as DIGEST_A
    "user": {"name": "researcher", "uid": 1000, "gid": 1000},
    "apt": {"openssh-server": "1:8.9p1-3ubuntu0.10", "tini": "0.19.0-1"},
    "build_args": {"PIP_INDEX_URL": "https://pypi.test/simple"},
}

NOT_A_CREDENTIAL = (
    "build arguments are kept in the image's history; give secrets to containers "
    "at run time (secrets: in the group data)"
)
SECRET_NAME_WORDS = (
    f"a build argument that is not a credential (its name says it is one; {NOT_A_CREDENTIAL})"
)
SECRET_SHAPED = f"a value that is not a credential (it looks like one: {NOT_A_CREDENTIAL})"
KNOWN_KEYS = (
    "apt, base, build_args, files, inventory, name, pip, pip_requirements, python, "
    "tf_version, user, version"
)


def spec_data(drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    data = {**copy.deepcopy(SPEC), **changes}
    for key in drop:
        del data[key]
    return data


def write_spec(path: Path, drop: tuple[str, ...] = (), **changes: Any) -> Path:
    path.write_text(yaml.safe_dump(spec_data(drop, **changes), sort_keys=False))
    return path


def write_requirements(
    path: Path,
    spec: dict[str, Any],
    pinned: list[Pinned],
    in_base: dict[str, str] | None = None,
    base_digest: str = DIGEST_A,
) -> str:
    """The file lock-deps would write for ``spec`` (resolved on ``base_digest``)."""
    inputs = ImageSpec.model_validate(spec).pip_inputs(base_digest)
    text = requirements.render(pinned, "s.yaml", inputs, in_base or {})
    path.write_text(text)
    return text


# --- the spec: what load_spec accepts -------------------------------------------------


def test_a_good_spec_loads_with_its_defaults(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "s.yaml")
    loaded, problems = load_spec(path)
    assert problems == []
    assert loaded is not None
    assert loaded.path == path
    spec = loaded.spec
    assert spec.python == "/usr/bin/python3"
    assert (spec.pip, spec.pip_requirements, spec.files) == ({}, None, {})
    assert spec.tag == "v1.2-tf2.17.1"
    assert spec.reference == f"{PUSH_REGISTRY}/team/tf-dev:v1.2-tf2.17.1"


@pytest.mark.parametrize(
    "changes",
    [
        {"version": "v1.2.3"},
        {"name": "localhost/team/tf-dev"},
        {"name": "registry.test/tf-dev"},
        {"base": "registry.test:5000/ml/tf:2.17.0-gpu"},
        {"pip": {"numpy": "1.26.4", "a.b_c-d": "2.0rc1.post3.dev4"}, "pip_requirements": "r.txt"},
        {"apt": {"g++": "4:12.2.0-3", "libc6": "2.36-9+deb12u4~bpo1"}},
        {"files": {"/etc/skel/.team-motd": "files/motd"}},
        {"build_args": {"PIP_INDEX_URL": "https://pypi.test/simple", "_X": ""}},
    ],
)
def test_good_variants_are_accepted(tmp_path: Path, changes: dict[str, Any]) -> None:
    loaded, problems = load_spec(write_spec(tmp_path / "s.yaml", **changes))
    assert problems == []
    assert loaded is not None


BASE_PIN = "; its digest comes from the lock"
VERSION_WORDS = "a version of the team scheme such as v1.2 or v1.2.3"
PIP_WORDS = "an exact version such as 1.26.4 (tfenv image lock-deps pins it with its hash)"
NAME_NO_TAG = (
    "an image name without tag such as registry.example.com/team/tf-dev "
    "(the tag comes from version and tf_version)"
)
NAME_REGISTRY = (
    "an image name that starts with its registry, such as "
    "registry.example.com/team/tf-dev (tfenv pushes there)"
)


@pytest.mark.parametrize(
    ("changes", "field", "expected", "got"),
    [
        (
            {"base": "registry.test:5000/ml/tf"},
            "base",
            "an explicit tag such as name:2.17.0 (no tag means the floating 'latest')" + BASE_PIN,
            "'registry.test:5000/ml/tf'",
        ),
        (
            {"base": "registry.test:5000/ml/tf:latest"},
            "base",
            "a pinned version tag, not the floating tag 'latest'" + BASE_PIN,
            "'registry.test:5000/ml/tf:latest'",
        ),
        (
            {"base": f"registry.test:5000/ml/tf@{DIGEST_A}"},
            "base",
            "a name:tag reference (the digest belongs in the lock's 'digest' field)" + BASE_PIN,
            "'registry.test:5000/ml/tf@sha256:aaaaaaaaaaaaaaaaaaaaaaaa...",
        ),
        ({"version": "latest"}, "version", VERSION_WORDS, "'latest'"),
        ({"version": "1.2"}, "version", VERSION_WORDS, "'1.2'"),
        ({"version": "v1"}, "version", VERSION_WORDS, "'v1'"),
        ({"version": "v1.2\n"}, "version", VERSION_WORDS, "'v1.2\\n'"),
        ({"tf_version": 2.17}, "tf_version", "a valid string", "2.17"),
        ({"tf_version": "2.17"}, "tf_version", "a TensorFlow version such as 2.17.1", "'2.17'"),
        (
            {"apt": {"tini": "*"}},
            "apt.tini",
            "an exact package version such as 1:9.2p1-2+deb12u3",
            "'*'",
        ),
        (
            {"apt": {"Tini": "0.19.0-1"}},
            "apt.Tini",
            "a Debian package name such as openssh-server",
            "'Tini'",
        ),
        (
            {"pip": {"tqdm": ">=1.0"}, "pip_requirements": "r.txt"},
            "pip.tqdm",
            PIP_WORDS,
            "'>=1.0'",
        ),
        ({"pip": {"tqdm": "1.*"}, "pip_requirements": "r.txt"}, "pip.tqdm", PIP_WORDS, "'1.*'"),
        (
            {"pip": {"tqdm": "4.67.1 "}, "pip_requirements": "r.txt"},
            "pip.tqdm",
            PIP_WORDS,
            "'4.67.1 '",
        ),
        (
            {"verison": "v1.3"},
            "verison",
            f"a known key (did you mean 'version'?); known keys: {KNOWN_KEYS}",
            "unknown key",
        ),
        (
            {"user": {"name": "researcher", "uid": 0, "gid": 1000}},
            "user.uid",
            "greater than or equal to 1",
            "0",
        ),
        ({"name": "team/tf-dev"}, "name", NAME_REGISTRY, "'team/tf-dev'"),
        ({"name": "tf-dev"}, "name", NAME_REGISTRY, "'tf-dev'"),
        (
            {"name": "registry.test:5000/team/tf-dev:v1.2"},
            "name",
            NAME_NO_TAG,
            "'registry.test:5000/team/tf-dev:v1.2'",
        ),
        (
            {"files": {"etc/motd": "files/motd"}},
            "files.etc/motd",
            "an absolute path of letters, digits and ._@+- (no ',', '=', spaces or '..')",
            "'etc/motd'",
        ),
        ({"inventory": ""}, "inventory", "string should have at least 1 character", "''"),
    ],
)
def test_a_rejected_field_is_named_with_the_file(
    tmp_path: Path, changes: dict[str, Any], field: str, expected: str, got: str
) -> None:
    path = write_spec(tmp_path / "s.yaml", **changes)
    loaded, problems = load_spec(path)
    assert loaded is None
    assert problems == [Problem(str(path), field, expected, got)]


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "s.yaml", drop=("base", "user"))
    assert load_spec(path) == (
        None,
        [
            Problem(str(path), "base", "this required field", "nothing"),
            Problem(str(path), "user", "this required field", "nothing"),
        ],
    )


@pytest.mark.parametrize("name", ["REGISTRY_PASSWORD", "API_TOKEN", "SSH_KEY", "aws_secret_x"])
def test_a_build_arg_named_like_a_credential_is_refused(tmp_path: Path, name: str) -> None:
    path = write_spec(tmp_path / "s.yaml", build_args={name: "hunter2-hunter2"})
    loaded, problems = load_spec(path)
    assert loaded is None
    assert problems == [Problem(str(path), f"build_args.{name}", SECRET_NAME_WORDS, None)]
    assert "hunter2" not in str(problems)


SECRET_SHAPED_VALUES = [
    "https://user:pw@host/simple",
    "AKIAIOSFODNN7EXAMPLE",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8",  # ghp_ and 36 characters
    "xoxb-1234567890-abcdef",
]


@pytest.mark.parametrize("value", SECRET_SHAPED_VALUES)
def test_a_build_arg_value_shaped_like_a_credential_is_refused(tmp_path: Path, value: str) -> None:
    path = write_spec(tmp_path / "s.yaml", build_args={"INDEX": value})
    loaded, problems = load_spec(path)
    assert loaded is None
    assert problems == [Problem(str(path), "build_args.INDEX", SECRET_SHAPED, None)]
    assert value not in str(problems)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12345678, "a valid string"),
        ("line1\nhunter2-hunter2", "printable ASCII on one line (at most 1024)"),
        ("x" * 1025, "printable ASCII on one line (at most 1024)"),
        ({"nested": "hunter2-hunter2"}, "a valid string"),
    ],
)
def test_a_bad_build_arg_value_is_never_echoed(tmp_path: Path, value: Any, expected: str) -> None:
    path = write_spec(tmp_path / "s.yaml", build_args={"INDEX": value})
    assert load_spec(path) == (None, [Problem(str(path), "build_args.INDEX", expected, None)])


def test_every_bad_build_arg_is_reported_and_none_echoed(tmp_path: Path) -> None:
    build_args = {"API_TOKEN": "plain", "URL": SECRET_SHAPED_VALUES[0], "OK": "fine"}
    path = write_spec(tmp_path / "s.yaml", build_args=build_args)
    loaded, problems = load_spec(path)
    assert loaded is None
    assert problems == [
        Problem(str(path), "build_args.API_TOKEN", SECRET_NAME_WORDS, None),
        Problem(str(path), "build_args.URL", SECRET_SHAPED, None),
    ]


def test_pip_without_requirements_is_refused(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "s.yaml", pip={"tqdm": "4.67.1"})
    loaded, problems = load_spec(path)
    assert loaded is None
    assert len(problems) == 1
    assert problems[0].host == str(path)
    assert "pip_requirements" in str(problems[0])
    assert "(write it with: tfenv image lock-deps SPEC)" in problems[0].expected


def test_pip_without_requirements_names_the_field(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "s.yaml", pip={"tqdm": "4.67.1"})
    _, problems = load_spec(path)
    assert [p.field for p in problems] == ["pip_requirements"]
    assert ": : " not in str(problems[0])


@pytest.mark.parametrize("target", ["/", "/etc/skel/"])
def test_a_files_target_must_be_a_file_path(tmp_path: Path, target: str) -> None:
    path = write_spec(tmp_path / "s.yaml", files={target: "files/motd"})
    loaded, problems = load_spec(path)
    assert loaded is None
    assert [p.field for p in problems] == [f"files.{target}"]


@pytest.mark.parametrize(
    ("text", "expected", "got"),
    [
        ("apt: &a {htop: '1'}\npip: *a\n", "no YAML aliases (line 2)", None),
        ("version: v1.2\nversion: v1.3\n", "each key once (line 2: 'version' again)", None),
        ("build_args: {A: x, A: y}\n", "each key once (line 1: 'A' again)", None),
        ("1: x\n", "string keys only (line 1: 1)", None),
        ("name: [unclosed\n", "valid YAML (line 2)", "while parsing a flow sequence"),
        ("- a\n- b\n", "a mapping of spec fields (see images/README.md)", None),
        ("just a string\n", "a mapping of spec fields (see images/README.md)", None),
        ("", "a mapping of spec fields (see images/README.md)", None),
    ],
)
def test_a_spec_file_that_is_not_a_plain_mapping(
    tmp_path: Path, text: str, expected: str, got: str | None
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert load_spec(path) == (None, [Problem(str(path), "(file)", expected, got)])


def test_a_yaml_error_in_a_build_arg_does_not_echo_it(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text('build_args:\n  A: "hunter2-hunter2\\q"\n')
    loaded, problems = load_spec(path)
    assert loaded is None
    assert problems == [
        Problem(str(path), "(file)", "valid YAML (line 2)", "while scanning a double-quoted scalar")
    ]


def test_an_oversized_spec_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    body = yaml.safe_dump(spec_data())
    path.write_text(body + "#" * (MAX_SPEC_BYTES + 1 - len(body)))
    assert path.stat().st_size == MAX_SPEC_BYTES + 1
    assert load_spec(path) == (
        None,
        [Problem(str(path), "(file)", f"a spec under {MAX_SPEC_BYTES} bytes")],
    )
    path.write_text(body + "#" * (MAX_SPEC_BYTES - len(body)))  # exactly the limit: read
    loaded, problems = load_spec(path)
    assert (problems, loaded is not None) == ([], True)


def test_missing_undecodable_and_directory_specs(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert load_spec(missing) == (
        None,
        [Problem(str(missing), "(file)", "an image spec file such as images/team-dev.yaml")],
    )
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    assert load_spec(binary) == (
        None,
        [Problem(str(binary), "(file)", "a readable UTF-8 file", "UnicodeDecodeError")],
    )
    assert load_spec(tmp_path) == (
        None,
        [Problem(str(tmp_path), "(file)", "a readable UTF-8 file", "IsADirectoryError")],
    )


def test_file_problems_names_each_missing_file(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "here").write_text("x")
    (tmp_path / "a-directory").mkdir()
    path = write_spec(
        tmp_path / "s.yaml",
        files={"/etc/here": "files/here", "/etc/gone": "files/gone", "/etc/d": "a-directory"},
        pip={"tqdm": "4.67.1"},
        pip_requirements="reqs.txt",
        inventory="inventories/nope.py",
    )
    loaded, _ = load_spec(path)
    assert loaded is not None
    where = str(path)
    assert file_problems(loaded, tmp_path) == [
        Problem(where, "files./etc/gone", "an existing file", "'files/gone'"),
        Problem(where, "files./etc/d", "an existing file", "'a-directory'"),
        Problem(
            where,
            "pip_requirements",
            f"an existing file; write it with: tfenv image lock-deps {where}",
            "'reqs.txt'",
        ),
        Problem(where, "inventory", "an existing file", "'inventories/nope.py'"),
    ]


def test_pip_inputs_change_with_base_python_and_packages() -> None:
    spec = ImageSpec.model_validate(spec_data(pip={"b": "1", "a": "2"}, pip_requirements="r"))
    same = ImageSpec.model_validate(spec_data(pip={"a": "2", "b": "1"}, pip_requirements="r"))
    inputs = spec.pip_inputs(DIGEST_A)
    assert inputs.startswith("sha256:") and len(inputs) == 71
    assert same.pip_inputs(DIGEST_A) == inputs  # order of declaration does not matter
    assert spec.pip_inputs(DIGEST_B) != inputs
    other_python = spec.model_copy(update={"python": "/opt/py/bin/python"})
    assert other_python.pip_inputs(DIGEST_A) != inputs
    other_version = ImageSpec.model_validate(
        spec_data(pip={"a": "2", "b": "1.0"}, pip_requirements="r")
    )
    assert other_version.pip_inputs(DIGEST_A) != inputs


# --- the pip requirements file --------------------------------------------------------


def test_normalise() -> None:
    assert requirements.normalise("Foo_Bar.baz--Qux") == "foo-bar-baz-qux"
    assert requirements.normalise("tqdm") == "tqdm"


def test_from_pip_report_pins_every_install_sorted_and_normalised() -> None:
    report = {
        "install": [
            {
                "metadata": {"name": "Zeta_Pkg", "version": "1.0"},
                "download_info": {"archive_info": {"hashes": {"sha256": H1}}},
            },
            {
                "metadata": {"name": "alpha", "version": "2.0"},
                "download_info": {"archive_info": {"hash": f"sha256={H2}"}},
            },
        ]
    }
    assert requirements.from_pip_report(report) == [
        Pinned("alpha", "2.0", (H2,)),
        Pinned("zeta-pkg", "1.0", (H1,)),
    ]
    assert requirements.from_pip_report({}) == []


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"metadata": {"name": "x"}, "download_info": {"archive_info": {}}},
            "pip's report has an entry without name or version",
        ),
        (
            {
                "metadata": {"name": "x", "version": "1"},
                "download_info": {"url": "git+https://git.test/x"},
            },
            "x 1 comes from git+https://git.test/x: only released files (wheels, sdists) "
            "can be pinned by hash",
        ),
        (
            {"metadata": {"name": "x", "version": "1"}, "download_info": {}},
            "x 1 comes from a non-archive source: only released files (wheels, sdists) "
            "can be pinned by hash",
        ),
        (
            {
                "metadata": {"name": "x", "version": "1"},
                "download_info": {"archive_info": {"hash": "md5=abc"}},
            },
            "x 1: pip's report gives no sha256",
        ),
        (
            {
                "metadata": {"name": "x", "version": "1"},
                "download_info": {"archive_info": {"hashes": {"sha256": "A" * 64}}},
            },
            "x 1: pip's report gives no sha256",
        ),
    ],
)
def test_from_pip_report_refuses_what_cannot_be_pinned(item: dict, message: str) -> None:
    with pytest.raises(RequirementsError) as raised:
        requirements.from_pip_report({"install": [item]})
    assert str(raised.value) == message


def test_render_and_parse_round_trip() -> None:
    pinned = [Pinned("alpha", "2.0", (H1, H2)), Pinned("zeta-pkg", "1.0", (H3,))]
    inputs = "sha256:" + "f" * 64
    text = requirements.render(pinned, "images/x.yaml", inputs, {"Six_Pkg": "1.16.0"})
    assert text == (
        "# Written by `tfenv image lock-deps images/x.yaml`: do not edit by hand.\n"
        f"# inputs: {inputs}\n"
        "# in the base image: six-pkg==1.16.0\n"
        f"alpha==2.0 \\\n    --hash=sha256:{H1} \\\n    --hash=sha256:{H2}\n"
        f"zeta-pkg==1.0 \\\n    --hash=sha256:{H3}\n"
    )
    assert requirements.parse(text) == (inputs, pinned)
    assert requirements.in_base(text) == {"six-pkg": "1.16.0"}


def test_parse_accepts_one_line_entries_and_no_inputs() -> None:
    text = f"\n# a comment\nSome_Pkg==1.0 --hash=sha256:{H1}\n"
    assert requirements.parse(text) == (None, [Pinned("some-pkg", "1.0", (H1,))])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "# inputs: x\ntqdm==4.67.1\n",
            "line 2: expected NAME==VERSION --hash=sha256:<64 hex> (every requirement pinned "
            "exactly, with its hash); write the file with tfenv image lock-deps",
        ),
        (
            f"tqdm>=4.67.1 --hash=sha256:{H1}\n",
            "line 1: expected NAME==VERSION --hash=sha256:<64 hex> (every requirement pinned "
            "exactly, with its hash); write the file with tfenv image lock-deps",
        ),
        (
            f"tqdm==4.67.1 \\\n    --hash=sha256:{H1[:63]}\n",
            "line 2: expected NAME==VERSION --hash=sha256:<64 hex> (every requirement pinned "
            "exactly, with its hash); write the file with tfenv image lock-deps",
        ),
        (f"tqdm==4.67.1 \\\n    --hash=sha256:{H1} \\\n", "the last line ends with '\\'"),
    ],
)
def test_parse_refuses_unpinned_or_unhashed_lines(text: str, message: str) -> None:
    with pytest.raises(RequirementsError) as raised:
        requirements.parse(text)
    assert str(raised.value) == message


def test_declared_problems() -> None:
    pinned = [Pinned("foo-bar", "1.0", (H1,)), Pinned("numpy", "1.26.4", (H2,))]
    base = {"six": "1.16.0", "numpy": "1.0"}  # the file's own pin wins over the base's
    assert requirements.declared_problems({"Foo_Bar": "1.0", "six": "1.16.0"}, pinned, base) == []
    assert requirements.declared_problems(
        {"zz": "1", "numpy": "1.0", "six": "1.17.0", "aa": "2"}, pinned, base
    ) == [
        "aa is declared but not in the file",
        "numpy: declared 1.0, the file pins 1.26.4",
        "six: declared 1.17.0, the file pins 1.16.0",
        "zz is declared but not in the file",
    ]


# --- the secret gate over a `docker save` stream ---------------------------------------


class OneWay:
    """A pipe: read() only, no seek/tell (like ``docker save``'s stdout)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


def tar_of(members: dict[str, bytes | str]) -> bytes:
    """A tar: bytes values are files; 'dir/' keys are directories; str values symlinks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


SECRET = SECRET_FILE_VALUE  # 18 characters
OTHER = SECRET_ENV_VALUE
DIFF_1 = "sha256:" + "1" * 64
DIFF_2 = "sha256:" + "2" * 64
HISTORY = [
    {"created_by": "/bin/sh -c #(nop) ADD file:0a1b in / "},
    {"created_by": '/bin/sh -c #(nop)  CMD ["bash"]', "empty_layer": True},
    {"created_by": "|1 PIP_INDEX_URL=https://pypi.test/simple /bin/sh -c echo hi > /etc/app.conf"},
]


def config_of(**extra: Any) -> dict[str, Any]:
    return {
        "config": {"Env": ["PATH=/usr/bin"], "Labels": {"a": "b"}},
        "history": HISTORY,
        "rootfs": {"type": "layers", "diff_ids": [DIFF_1, DIFF_2]},
        **extra,
    }


def saved(layer_1: bytes, layer_2: bytes, config: bytes | dict | None = None) -> OneWay:
    """A legacy-format `docker save` stream with two layers."""
    if not isinstance(config, bytes):
        config = json.dumps(config or config_of()).encode()
    manifest = [
        {"Config": "abc.json", "RepoTags": ["x:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}
    ]
    return OneWay(
        tar_of(
            {
                "l1/": b"",
                "l1/VERSION": b"1.0",
                "l1/layer.tar": layer_1,
                "l2/": b"",
                "l2/layer.tar": layer_2,
                "abc.json": config,
                "manifest.json": json.dumps(manifest).encode(),
                "repositories": b'{"x": {"1": "abc"}}',
            }
        )
    )


LABEL_1 = f"layer 1/2 ({DIFF_1[:19]}..., ADD file:0a1b in /)"
LABEL_2 = (
    f"layer 2/2 ({DIFF_2[:19]}..., |1 PIP_INDEX_URL=https://pypi.test/simple RUN echo hi > /...)"
)
CONFIG_HIT = ("image config", "env, labels or a step's command (history)")


def test_a_clean_image_has_no_hits() -> None:
    stream = saved(tar_of({"etc/": b"", "etc/a": b"nothing"}), tar_of({"etc/b": b"x"}))
    assert scan_saved_image(stream, {"token": SECRET, "reg_pw": OTHER}) == ([], [])


def test_a_hit_names_secret_layer_step_and_path_never_the_value() -> None:
    layer_2 = tar_of(
        {
            "etc/": b"",
            "etc/app.conf": b"token=" + SECRET.encode() + b"\n",
            "etc/link": "app.conf",  # a symlink: no content of its own
            "./opt/also": b"prefix" + SECRET.encode() + OTHER.encode(),
        }
    )
    hits, short = scan_saved_image(
        saved(tar_of({"etc/a": b"x"}), layer_2), {"token": SECRET, "reg_pw": OTHER, "pin": "1234"}
    )
    assert short == ["pin"]
    assert hits == [
        Hit("token", LABEL_2, "/etc/app.conf"),
        Hit("reg_pw", LABEL_2, "/opt/also"),
        Hit("token", LABEL_2, "/opt/also"),
    ]
    assert SECRET not in repr(hits)
    assert OTHER not in repr(hits)


def test_a_file_deleted_by_a_later_layer_still_counts() -> None:
    layer_1 = tar_of({"root/": b"", "root/.netrc": b"password " + SECRET.encode()})
    layer_2 = tar_of({"root/.wh..netrc": b""})  # the whiteout: deleted in layer 2
    hits, short = scan_saved_image(saved(layer_1, layer_2), {"token": SECRET})
    assert (hits, short) == ([Hit("token", LABEL_1, "/root/.netrc")], [])


def test_a_root_level_dotfile_is_reported_at_its_path() -> None:
    layer_2 = tar_of({".netrc": b"password " + SECRET.encode()})
    hits, _ = scan_saved_image(saved(tar_of({"a": b""}), layer_2), {"token": SECRET})
    assert hits == [Hit("token", LABEL_2, "/.netrc")]


def test_a_layer_hit_label_never_quotes_the_value() -> None:
    history = [HISTORY[0], {"created_by": f"|1 TOKEN={SECRET} /bin/sh -c echo $TOKEN > /t"}]
    layer_2 = tar_of({"t": SECRET.encode()})
    hits, _ = scan_saved_image(
        saved(tar_of({"a": b""}), layer_2, config_of(history=history)), {"token": SECRET}
    )
    assert [(h.secret, h.path) for h in hits] == [("token", "/t"), ("token", CONFIG_HIT[1])]
    assert SECRET not in repr(hits)


@pytest.mark.parametrize(
    "config",
    [
        config_of(config={"Env": [f"TOKEN={SECRET}"]}),
        config_of(config={"Labels": {"x": f"v{SECRET}v"}}),
        config_of(
            history=[
                *HISTORY,
                {"created_by": f"|1 TOKEN={SECRET} /bin/sh -c true", "empty_layer": True},
            ]
        ),
    ],
    ids=["env", "label", "history"],
)
def test_a_value_in_the_image_config_is_a_config_hit(config: dict) -> None:
    hits, _ = scan_saved_image(saved(tar_of({"a": b""}), tar_of({"b": b""}), config), {"t": SECRET})
    assert hits == [Hit("t", *CONFIG_HIT)]


def test_a_config_value_escaped_by_go_json_is_found() -> None:
    value = "p<w>d&0123"
    escaped = value.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    raw = json.dumps(config_of()).replace('"PATH=/usr/bin"', f'"X={escaped}"').encode()
    assert value.encode() not in raw  # only the decoded strings hold it
    hits, _ = scan_saved_image(saved(tar_of({"a": b""}), tar_of({"b": b""}), raw), {"v": value})
    assert hits == [Hit("v", *CONFIG_HIT)]


def test_a_value_in_both_a_layer_and_the_config_gives_both_hits() -> None:
    config = config_of(config={"Env": [f"TOKEN={SECRET}"]})
    layer_1 = tar_of({"env.sh": SECRET.encode()})
    hits, _ = scan_saved_image(saved(layer_1, tar_of({"b": b""}), config), {"token": SECRET})
    assert hits == [Hit("token", LABEL_1, "/env.sh"), Hit("token", *CONFIG_HIT)]


def test_values_shorter_than_eight_are_reported_not_searched() -> None:
    layer = tar_of({"a": b"1234567 abcdefgh"})
    hits, short = scan_saved_image(
        saved(layer, layer), {"seven": "1234567", "eight": "abcdefgh", "empty": ""}
    )
    assert short == ["empty", "seven"]
    assert hits == [Hit("eight", LABEL_1, "/a"), Hit("eight", LABEL_2, "/a")]


def test_an_oci_layout_save_is_searched_too() -> None:
    """Newer docker: config and layers under blobs/sha256/, named by the manifest."""
    config = config_of(history=[{"created_by": "COPY app /app # buildkit"}])
    config["rootfs"]["diff_ids"] = [DIFF_1]
    manifest = [{"Config": "blobs/sha256/cfg", "Layers": ["blobs/sha256/l1"]}]
    stream = OneWay(
        tar_of(
            {
                "blobs/sha256/l1": tar_of({"app/settings.py": f"KEY='{SECRET}'".encode()}),
                "blobs/sha256/cfg": json.dumps(config).encode(),
                "index.json": b"{}",
                "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
                "manifest.json": json.dumps(manifest).encode(),
            }
        )
    )
    hits, _ = scan_saved_image(stream, {"token": SECRET})
    assert hits == [
        Hit("token", f"layer 1/1 ({DIFF_1[:19]}..., COPY app /app # buildkit)", "/app/settings.py")
    ]


def test_a_long_step_is_shortened_in_the_label() -> None:
    step = "/bin/sh -c " + "x" * 100
    config = config_of(history=[{"created_by": step}, {"created_by": "/bin/sh -c true"}])
    hits, _ = scan_saved_image(saved(tar_of({"f": SECRET.encode()}), b"", config), {"t": SECRET})
    assert hits == [Hit("t", f"layer 1/2 ({DIFF_1[:19]}..., RUN {'x' * 53}...)", "/f")]


@pytest.mark.parametrize("offset", [0, 1, 8, 9, 15, 16, 30])
def test_search_stream_finds_a_needle_across_chunk_boundaries(
    monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    monkeypatch.setattr(layers, "CHUNK", 16)
    needle = b"SECRET-9"  # 8 bytes: offsets 9..15 straddle the first boundary
    data = b"." * offset + needle + b"." * 40
    assert search_stream(OneWay(data), [Needle("n", needle), Needle("no", b"ABSENT!!")]) == {"n"}


def test_search_stream_finds_a_needle_longer_than_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers, "CHUNK", 16)
    needle = bytes(range(65, 65 + 40))  # spans three chunks
    data = b"." * 15 + needle + b"." * 3
    short = Needle("short", b"........")
    assert search_stream(OneWay(data), [Needle("long", needle), short]) == {"long", "short"}
    assert search_stream(OneWay(data[:-4]), [Needle("long", needle)]) == set()
    assert search_stream(OneWay(data), []) == set()


def test_a_layer_file_straddling_the_chunk_boundary_is_a_hit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(layers, "CHUNK", 32)
    content = b"x" * 25 + SECRET.encode() + b"y" * 100  # the value spans bytes 25..42
    hits, _ = scan_saved_image(saved(tar_of({"big": content}), b""), {"token": SECRET})
    assert hits == [Hit("token", LABEL_1, "/big")]


def test_prefixed_stream_serves_its_head_first() -> None:
    stream = layers._Prefixed(b"abc", io.BytesIO(b"defgh"))
    assert [stream.read(2), stream.read(3), stream.read(0), stream.read()] == [
        b"ab",
        b"cde",
        b"",
        b"fgh",
    ]
    assert layers._Prefixed(b"abc", io.BytesIO(b"de")).read() == b"abcde"


# --- pure parts of the build -------------------------------------------------------------


def make_plan(
    base_dir: Path,
    registry_spec: Registry | None = None,
    requirements_text: str = "",
    **changes: Any,
) -> Plan:
    spec = ImageSpec.model_validate(spec_data(**changes))
    return Plan(
        LoadedSpec(Path("images/s.yaml"), spec),
        base_dir,
        base_dir / "images.lock.yaml",
        ImageLock(base_dir / "images.lock.yaml"),
        DIGEST_A,
        PUSH_REGISTRY,
        registry_spec,
        None,
        requirements_text=requirements_text,
    )


def check_line(python: str) -> str:
    return (
        'RUN for need in /usr/sbin/sshd /usr/bin/tini; do test -x "$need" || { echo '
        '"tfenv image build: $need is missing: add openssh-server and tini to apt: '
        '(exact versions)" >&2; exit 1; }; done \\\n'
        f' && test -x {python} || {{ echo "tfenv image build: python: {python} '
        'is not in the base image" >&2; exit 1; }'
    )


DEV_COPIES = [
    "COPY tfenv-dev-entrypoint /usr/local/bin/tfenv-dev-entrypoint",
    "COPY tfenv-sshd_config /etc/ssh/tfenv-sshd_config",
    "COPY jupyter_server_config.py /etc/jupyter/jupyter_server_config.py",
]
DEV_MODES = (
    "chmod 755 /usr/local/bin/tfenv-dev-entrypoint && chmod 644 /etc/ssh/tfenv-sshd_config "
    "&& chmod 644 /etc/jupyter/jupyter_server_config.py"
)
TAIL = [
    "EXPOSE 2222 8888",
    'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/tfenv-dev-entrypoint"]',
    "CMD []",
]


def user_line(name: str, uid: int, gid: int, modes: str) -> str:
    return (
        f"RUN {modes} \\\n"
        f" && (getent group {gid} >/dev/null || groupadd -g {gid} {name}) \\\n"
        f" && (getent passwd {uid} >/dev/null || useradd -u {uid} -g {gid} -M -s /bin/bash {name})"
    )


def test_render_dockerfile_minimal(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, apt={}, build_args={})
    dockerfile, context = render_dockerfile(plan, with_ca=True)  # no pip: no CA needed
    assert dockerfile == "\n".join(
        [
            "# Generated by tfenv image build from images/s.yaml: do not edit.",
            f"FROM {PUSH_REGISTRY}/ml/tf@{DIGEST_A}",
            "USER root",
            check_line("/usr/bin/python3"),
            *DEV_COPIES,
            user_line("researcher", 1000, 1000, DEV_MODES),
            "USER 1000:1000",
            *TAIL,
            "",
        ]
    )
    assert context == {
        "tfenv-dev-entrypoint": (dev_file("tfenv-dev-entrypoint").encode(), 0o755),
        "tfenv-sshd_config": (dev_file("tfenv-sshd_config").encode(), 0o644),
        "jupyter_server_config.py": (dev_file("jupyter_server_config.py").encode(), 0o644),
    }


def test_render_dockerfile_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(build, "CA_BUNDLE", ca)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "motd").write_bytes(b"hello\n")
    (tmp_path / "files" / "a").write_bytes(b"A")
    plan = make_plan(
        tmp_path,
        requirements_text="tqdm==4.67.1 --hash=sha256:" + H1 + "\n",
        python="/opt/tf/bin/python",
        user={"name": "dev", "uid": 1500, "gid": 1600},
        pip={"tqdm": "4.67.1"},
        pip_requirements="r.txt",
        files={"/etc/skel/.motd": "files/motd", "/etc/a": "files/a"},
        build_args={"PIP_INDEX_URL": "https://pypi.test/simple", "HTTP_PROXY": "http://p:3128"},
    )
    dockerfile, context = render_dockerfile(plan, with_ca=True)
    pip_run = (
        "RUN PIP_CERT=/tmp/tfenv-build/tfenv-build-ca.crt /opt/tf/bin/python -m pip install "
        "--no-cache-dir --disable-pip-version-check --require-hashes "
        "-r /tmp/tfenv-build/tfenv-requirements.txt \\\n && rm -rf /tmp/tfenv-build"
    )
    assert dockerfile == "\n".join(
        [
            "# Generated by tfenv image build from images/s.yaml: do not edit.",
            f"FROM {PUSH_REGISTRY}/ml/tf@{DIGEST_A}",
            "ARG HTTP_PROXY",
            "ARG PIP_INDEX_URL",
            "USER root",
            "RUN apt-get update \\\n"
            " && apt-get install -y --no-install-recommends "
            "openssh-server=1:8.9p1-3ubuntu0.10 tini=0.19.0-1 \\\n"
            " && rm -rf /var/lib/apt/lists/* \\\n"
            " && rm -f /etc/ssh/ssh_host_*",
            check_line("/opt/tf/bin/python"),
            "COPY tfenv-requirements.txt tfenv-build-ca.crt /tmp/tfenv-build/",
            pip_run,
            *DEV_COPIES,
            "COPY tfenv-file-0 /etc/a",
            "COPY tfenv-file-1 /etc/skel/.motd",
            user_line(
                "dev", 1500, 1600, DEV_MODES + " && chmod 644 /etc/a && chmod 644 /etc/skel/.motd"
            ),
            "USER 1500:1600",
            *TAIL,
            "",
        ]
    )
    assert context["tfenv-requirements.txt"] == (plan.requirements_text.encode(), 0o644)
    assert context["tfenv-build-ca.crt"] == (b"-----BEGIN CERTIFICATE-----\n", 0o644)
    assert context["tfenv-file-0"] == (b"A", 0o644)
    assert context["tfenv-file-1"] == (b"hello\n", 0o644)
    # Build arguments are declared, never given a value in the Dockerfile.
    assert "pypi.test" not in dockerfile and "3128" not in dockerfile

    without_ca, context = render_dockerfile(plan, with_ca=False)
    assert "COPY tfenv-requirements.txt /tmp/tfenv-build/\n" in without_ca
    assert "RUN /opt/tf/bin/python -m pip install" in without_ca
    assert "PIP_CERT" not in without_ca
    assert "tfenv-build-ca.crt" not in context


def test_plan_local_maps_the_push_registry_to_its_endpoint(tmp_path: Path) -> None:
    assert make_plan(tmp_path).local("registry.test:5000/team/x:1") == "registry.test:5000/team/x:1"
    endpoint = Registry(username="r", password_secret="pw", endpoint="https://127.0.0.1:5001/")
    plan = make_plan(tmp_path, registry_spec=endpoint)
    assert plan.local("registry.test:5000/team/tf-dev:v1.2-tf2.17.1") == (
        "127.0.0.1:5001/team/tf-dev:v1.2-tf2.17.1"
    )
    assert plan.base_pinned == f"127.0.0.1:5001/ml/tf@{DIGEST_A}"
    no_endpoint = Registry(username="r", password_secret="pw")
    assert make_plan(tmp_path, registry_spec=no_endpoint).base_pinned == (
        f"registry.test:5000/ml/tf@{DIGEST_A}"
    )


def test_plan_local_leaves_other_registries_alone(tmp_path: Path) -> None:
    endpoint = Registry(username="r", password_secret="pw", endpoint="https://127.0.0.1:5001")
    plan = make_plan(tmp_path, registry_spec=endpoint, base="nvcr.io/nvidia/tensorflow:24.01")
    assert plan.base_pinned == f"nvcr.io/nvidia/tensorflow@{DIGEST_A}"


def test_labels(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    now = datetime.datetime(
        2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    assert labels(plan, "skipped (--skip-scan)", "abc123-dirty", now) == {
        "org.opencontainers.image.title": f"{PUSH_REGISTRY}/team/tf-dev",
        "org.opencontainers.image.version": "v1.2-tf2.17.1",
        "org.opencontainers.image.revision": "abc123-dirty",
        "org.opencontainers.image.created": "2025-01-02T01:04:05Z",
        "org.opencontainers.image.base.name": f"{PUSH_REGISTRY}/ml/tf:2.17.0",
        "org.opencontainers.image.base.digest": DIGEST_A,
        "tfenv.image.spec": "images/s.yaml",
        "tfenv.image.scan": "skipped (--skip-scan)",
    }


def test_scan_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert scan_mode(True) == "skipped (--skip-scan)"
    assert scan_mode(False) == "trivy image --exit-code 1 --severity HIGH,CRITICAL --ignore-unfixed"
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    assert scan_mode(False) == "not scanned (trivy is not installed)"
    assert scan_mode(True) == "skipped (--skip-scan)"


def vulnerability(vid: str, severity: str, package: str = "openssl") -> dict[str, str]:
    return {
        "VulnerabilityID": vid,
        "PkgName": package,
        "InstalledVersion": "1.0",
        "FixedVersion": "1.1",
        "Severity": severity,
    }


def test_summarise_trivy_nothing_found() -> None:
    nothing = "no HIGH or CRITICAL vulnerability with a fix"
    assert summarise_trivy("") == nothing
    assert summarise_trivy('{"Results": null}') == nothing
    medium = {"Results": [{"Vulnerabilities": [vulnerability("CVE-1", "MEDIUM")]}, {}]}
    assert summarise_trivy(json.dumps(medium)) == nothing
    assert summarise_trivy("not json {") == "trivy's report could not be read"


def test_summarise_trivy_criticals_first_and_cut_short() -> None:
    report = {
        "Results": [
            {
                "Vulnerabilities": [
                    vulnerability("CVE-3", "HIGH"),
                    vulnerability("CVE-9", "CRITICAL", "zlib"),
                    vulnerability("CVE-0", "LOW"),
                ]
            },
            {"Vulnerabilities": [vulnerability("CVE-1", "HIGH"), vulnerability("CVE-2", "HIGH")]},
        ]
    }
    assert summarise_trivy(json.dumps(report), shown=3) == "\n".join(
        [
            "1 CRITICAL, 3 HIGH with a fix:",
            "  CVE-9 zlib 1.0 -> 1.1 (CRITICAL)",
            "  CVE-1 openssl 1.0 -> 1.1 (HIGH)",
            "  CVE-2 openssl 1.0 -> 1.1 (HIGH)",
            "  ... and 1 more (trivy image --exit-code 1 --severity HIGH,CRITICAL "
            "--ignore-unfixed)",
        ]
    )
    assert summarise_trivy(json.dumps(report)).count("\n") == 4


def test_write_lock_entry_keeps_every_other_entry_and_the_promotions(tmp_path: Path) -> None:
    path = tmp_path / "images.lock.yaml"
    old = LockedImage("r.test/ml/tf:1", DIGEST_A, DIGEST_B)
    new = LockedImage("r.test/ml/tf:2", DIGEST_B)
    promoted = {"r.test/ml/tf:1": Promotion("r.test/ml/tf:2", "r-20261127-101500-1a2b")}
    path.write_text(dump_lock({old.reference: old, new.reference: new}, promoted))
    built = LockedImage("r.test/team/x:v1.0-tf2.17.1", DIGEST_C)
    write_lock_entry(path, built)
    lock, issues = read_lock(path)
    assert issues == []
    assert lock.images == {old.reference: old, new.reference: new, built.reference: built}
    assert lock.promoted == promoted
    write_lock_entry(path, LockedImage(built.reference, DIGEST_A))  # set again: replaced
    lock, _ = read_lock(path)
    assert lock.images[built.reference] == LockedImage(built.reference, DIGEST_A)
    assert len(lock.images) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.lock.yaml"]


def test_write_lock_entry_refuses_a_broken_lock_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "images.lock.yaml"
    path.write_text("version: 2\nimages: {}\n")
    with pytest.raises(BuildError) as raised:
        write_lock_entry(path, LockedImage("r.test/team/x:v1.0-tf2.17.1", DIGEST_C))
    assert str(raised.value) == f"{path}: the lock cannot be read now (lock format version 1)"
    assert path.read_text() == "version: 2\nimages: {}\n"


# --- plan_build against a fleet on disk ------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the directory tfenv runs from: a two-host inventory whose
    group_data is conftest's GOOD_DATA, its lock, secret file and secret env."""
    prepare_secrets_and_lock(tmp_path, monkeypatch)
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(
        "".join(f"{key} = {value!r}\n" for key, value in GOOD_DATA.items())
    )
    (tmp_path / "inventory.py").write_text('gpu = [("node-1", {}), ("node-2", {})]\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


S = Path("s.yaml")
RERUN = "run: tfenv image lock-deps s.yaml"
TQDM = Pinned("tqdm", "4.67.1", (H1,))


def pip_spec(**changes: Any) -> dict[str, Any]:
    return spec_data(pip={"tqdm": "4.67.1"}, pip_requirements="reqs.txt", **changes)


def test_a_good_spec_gives_a_plan(fleet: Path) -> None:
    data = pip_spec()
    write_spec(fleet / "s.yaml", **{k: v for k, v in data.items() if k not in SPEC})
    text = write_requirements(fleet / "reqs.txt", data, [TQDM])
    plan, problems = plan_build(S, fleet)
    assert problems == []
    assert plan is not None
    assert plan.loaded.path == S
    assert plan.base_dir == fleet
    assert plan.lock_path == fleet / "images.lock.yaml"
    assert plan.base_digest == DIGEST_A
    assert plan.base_pinned == f"{PUSH_REGISTRY}/ml/tf@{DIGEST_A}"
    assert plan.registry == PUSH_REGISTRY
    assert plan.registry_spec == Registry(username="robot", password_secret="reg_pw")
    assert plan.password is not None and plan.password.reveal() == SECRET_ENV_VALUE
    assert {name: value.reveal() for name, value in plan.secrets.items()} == {
        "reg_pw": SECRET_ENV_VALUE,
        "token": SECRET_FILE_VALUE,
    }
    assert plan.unreadable == []
    assert plan.requirements_text == text
    assert set(plan.lock.images) == {
        f"{PUSH_REGISTRY}/ml/tf:2.17.0",
        f"{PUSH_REGISTRY}/ml/tf:2.18.0",
    }


def test_the_base_digest_is_the_platform_digest_when_locked(fleet: Path) -> None:
    base = f"{PUSH_REGISTRY}/ml/tf:2.17.0"
    (fleet / "images.lock.yaml").write_text(
        dump_lock({base: LockedImage(base, DIGEST_A, DIGEST_C)})
    )
    write_spec(fleet / "s.yaml")
    plan, problems = plan_build(S, fleet)
    assert (problems, plan is not None) == ([], True)
    assert plan is not None and plan.base_digest == DIGEST_C


def test_a_secret_this_machine_cannot_read_is_listed_not_searched(fleet: Path) -> None:
    (fleet / "secrets" / "token").unlink()
    write_spec(fleet / "s.yaml")
    plan, problems = plan_build(S, fleet)
    assert problems == []
    assert plan is not None
    assert (sorted(plan.secrets), plan.unreadable) == (["reg_pw"], ["token"])


def test_an_unreadable_registry_password_is_a_problem(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TFENV_TEST_REG_PW")
    write_spec(fleet / "s.yaml")
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                "s.yaml",
                "name",
                "the password of registry.test:5000 readable here (secret 'reg_pw'; "
                "run: tfenv validate inventory.py)",
            )
        ],
    )


def test_a_base_not_in_the_lock(fleet: Path) -> None:
    write_spec(fleet / "s.yaml", base=f"{PUSH_REGISTRY}/ml/tf:2.19.0")
    lock = fleet / "images.lock.yaml"
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                "s.yaml",
                "base",
                f"an image pinned in {lock} (run: tfenv lock inventory.py, with the base among "
                "the fleet's images)",
                f"{PUSH_REGISTRY}/ml/tf:2.19.0",
            )
        ],
    )


def test_a_push_registry_not_declared(fleet: Path) -> None:
    write_spec(fleet / "s.yaml", name="other.test/team/tf-dev")
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                "s.yaml",
                "name",
                "an image in a registry inventory.py declares under registries (with its "
                "login); declared: registry.test:5000",
                "other.test",
            )
        ],
    )


def test_a_build_arg_holding_a_declared_secret_value(fleet: Path) -> None:
    leaky = {"PIP_INDEX_URL": f"https://pypi.test/simple?t={SECRET_FILE_VALUE}", "OK": "1"}
    write_spec(fleet / "s.yaml", build_args=leaky)
    plan, problems = plan_build(S, fleet)
    assert plan is None
    assert problems == [
        Problem(
            "s.yaml",
            "build_args.PIP_INDEX_URL",
            "a value that is not secret 'token' (build arguments are kept in the image's history)",
        )
    ]
    assert SECRET_FILE_VALUE not in str(problems)


def test_stale_requirements(fleet: Path) -> None:
    write_spec(fleet / "s.yaml", pip={"tqdm": "4.67.2"}, pip_requirements="reqs.txt")
    write_requirements(fleet / "reqs.txt", pip_spec(), [TQDM])  # resolved for 4.67.1
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                "s.yaml",
                "pip_requirements",
                "a file resolved for this base and these packages "
                f"(the spec changed since; {RERUN})",
                str(fleet / "reqs.txt"),
            )
        ],
    )
    # The same file, resolved on another base digest, is stale too.
    write_spec(fleet / "s.yaml", pip={"tqdm": "4.67.1"}, pip_requirements="reqs.txt")
    write_requirements(fleet / "reqs.txt", pip_spec(), [TQDM], base_digest=DIGEST_B)
    _, problems = plan_build(S, fleet)
    assert [p.field for p in problems] == ["pip_requirements"]
    assert problems[0].expected.startswith("a file resolved for this base")


def test_a_requirements_line_without_hash(fleet: Path) -> None:
    write_spec(fleet / "s.yaml", pip={"tqdm": "4.67.1"}, pip_requirements="reqs.txt")
    good = write_requirements(fleet / "reqs.txt", pip_spec(), [TQDM])
    (fleet / "reqs.txt").write_text(good + "numpy==1.26.4\n")
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                str(fleet / "reqs.txt"),
                "(file)",
                "line 5: expected NAME==VERSION --hash=sha256:<64 hex> (every requirement "
                "pinned exactly, with its hash); write the file with tfenv image lock-deps",
            )
        ],
    )


def test_declared_packages_missing_from_the_requirements(fleet: Path) -> None:
    pip = {"tqdm": "4.67.1", "numpy": "1.26.4", "six": "1.16.0"}
    write_spec(fleet / "s.yaml", pip=pip, pip_requirements="reqs.txt")
    data = spec_data(pip=pip, pip_requirements="reqs.txt")
    write_requirements(
        fleet / "reqs.txt", data, [Pinned("tqdm", "4.67.0", (H1,))], {"six": "1.16.0"}
    )
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                "s.yaml",
                "pip_requirements",
                f"numpy is declared but not in the file; tqdm: declared 4.67.1, the file pins "
                f"4.67.0 ({RERUN})",
            )
        ],
    )


def test_missing_files_are_all_named(fleet: Path) -> None:
    write_spec(
        fleet / "s.yaml",
        files={"/etc/motd": "files/motd"},
        pip={"tqdm": "4.67.1"},
        pip_requirements="reqs.txt",
        inventory="inventories/nope.py",
    )
    assert plan_build(S, fleet) == (
        None,
        [
            Problem("s.yaml", "files./etc/motd", "an existing file", "'files/motd'"),
            Problem(
                "s.yaml",
                "pip_requirements",
                f"an existing file; write it with: tfenv image lock-deps {S}",
                "'reqs.txt'",
            ),
            Problem("s.yaml", "inventory", "an existing file", "'inventories/nope.py'"),
        ],
    )


def test_lock_deps_tolerates_a_missing_requirements_file(fleet: Path) -> None:
    write_spec(fleet / "s.yaml", pip={"tqdm": "4.67.1"}, pip_requirements="reqs.txt")
    assert plan_build(S, fleet)[1][0].field == "pip_requirements"
    plan, problems = plan_build(S, fleet, lock_deps=True)
    assert problems == []
    assert plan is not None and plan.requirements_text == ""
    # A stale file is what lock-deps replaces: not a problem for it either.
    write_requirements(fleet / "reqs.txt", pip_spec(), [TQDM], base_digest=DIGEST_B)
    assert plan_build(S, fleet, lock_deps=True)[1] == []


def test_lock_deps_still_names_other_missing_files(fleet: Path) -> None:
    write_spec(
        fleet / "s.yaml",
        pip={"tqdm": "4.67.1"},
        pip_requirements="reqs.txt",
        files={"/etc/motd": "files/motd"},
    )
    assert plan_build(S, fleet, lock_deps=True) == (
        None,
        [Problem("s.yaml", "files./etc/motd", "an existing file", "'files/motd'")],
    )


def test_lock_deps_needs_a_requirements_path(fleet: Path) -> None:
    write_spec(fleet / "s.yaml")
    assert plan_build(S, fleet, lock_deps=True) == (
        None,
        [Problem("s.yaml", "pip_requirements", "the path of the file to write", "nothing")],
    )


def test_an_inventory_that_raises_is_one_problem(fleet: Path) -> None:
    (fleet / "inventory.py").write_text("raise RuntimeError('boom')\n")
    write_spec(fleet / "s.yaml")
    assert plan_build(S, fleet) == (
        None,
        [Problem("s.yaml", "inventory", "an inventory tfenv can load", "RuntimeError: boom")],
    )


def test_an_inventory_with_invalid_data_or_two_locks(fleet: Path) -> None:
    # Distinct file names: pyinfra caches an inventory's compiled code by path.
    (fleet / "bad-data.py").write_text('gpu = [("node-1", {"gpu_count": -1})]\n')
    write_spec(fleet / "s.yaml", inventory="bad-data.py")
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                "s.yaml",
                "inventory",
                "valid declared data (host node-1; run: tfenv validate bad-data.py)",
            )
        ],
    )
    (fleet / "two-locks.py").write_text(
        'gpu = [("node-1", {}), ("node-2", {"image_lock": "other.lock.yaml"})]\n'
    )
    write_spec(fleet / "s.yaml", inventory="two-locks.py")
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                "s.yaml",
                "inventory",
                "an inventory whose hosts declare one image_lock",
                "2 lock file(s)",
            )
        ],
    )


def test_a_broken_lock_is_named_by_its_path(fleet: Path) -> None:
    (fleet / "images.lock.yaml").write_text("version: 1\nimages:\n  ml/tf:latest: {digest: x}\n")
    write_spec(fleet / "s.yaml")
    lock = str(fleet / "images.lock.yaml")
    assert plan_build(S, fleet) == (
        None,
        [
            Problem(
                lock,
                "images['ml/tf:latest']",
                "a pinned version tag, not the floating tag 'latest'",
                "'ml/tf:latest'",
            ),
            Problem(
                lock,
                "images['ml/tf:latest'].digest",
                "a digest of the form sha256:<64 hex>",
                "'x'",
            ),
        ],
    )


def test_a_binary_secret_file_does_not_crash_planning(fleet: Path) -> None:
    (fleet / "secrets" / "token").write_bytes(b"\xff\xfe\x00binary-secret\n")
    write_spec(fleet / "s.yaml")
    plan, problems = plan_build(S, fleet)
    named = (plan is not None and plan.unreadable == ["token"]) or any(
        "token" in p.field for p in problems
    )
    assert named


# --- the CLI's answer to bad input ------------------------------------------------------


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["image", *args])


def assert_refused(result, problems: list[str], spec: str = "s.yaml") -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [*problems, f"{spec}: fix the above; nothing was built."]
    assert "Traceback" not in result.output


def test_cli_build_prints_every_spec_problem_once(fleet: Path) -> None:
    write_spec(
        fleet / "s.yaml",
        version="latest",
        base=f"{PUSH_REGISTRY}/ml/tf",
        pip={"numpy": ">=1.0"},
        build_args={"API_TOKEN": "hunter2-hunter2", "URL": "https://u:hunter2@h/simple"},
    )
    result = invoke("build", "s.yaml")
    assert_refused(
        result,
        [
            f"s.yaml: version: expected {VERSION_WORDS}, got 'latest'",
            "s.yaml: base: expected an explicit tag such as name:2.17.0 (no tag means the "
            f"floating 'latest'); its digest comes from the lock, got '{PUSH_REGISTRY}/ml/tf'",
            "s.yaml: pip.numpy: expected an exact version such as 1.26.4 (tfenv image "
            "lock-deps pins it with its hash), got '>=1.0'",
            f"s.yaml: build_args.API_TOKEN: expected {SECRET_NAME_WORDS}",
            f"s.yaml: build_args.URL: expected {SECRET_SHAPED}",
        ],
    )
    assert "hunter2" not in result.output


def test_cli_build_with_a_secret_in_a_build_arg(fleet: Path) -> None:
    write_spec(fleet / "s.yaml", build_args={"PIP_INDEX_URL": f"https://x.test/{SECRET_ENV_VALUE}"})
    result = invoke("build", "s.yaml")
    assert_refused(
        result,
        [
            "s.yaml: build_args.PIP_INDEX_URL: expected a value that is not secret 'reg_pw' "
            "(build arguments are kept in the image's history)"
        ],
    )
    assert SECRET_ENV_VALUE not in result.output


def test_cli_build_with_missing_files(fleet: Path) -> None:
    write_spec(fleet / "s.yaml", files={"/etc/a": "gone"}, inventory="nope.py")
    assert_refused(
        invoke("build", "s.yaml"),
        [
            "s.yaml: files./etc/a: expected an existing file, got 'gone'",
            "s.yaml: inventory: expected an existing file, got 'nope.py'",
        ],
    )


def test_cli_build_of_a_missing_spec(fleet: Path) -> None:
    assert_refused(
        invoke("build", "images/nope.yaml"),
        ["images/nope.yaml: (file): expected an image spec file such as images/team-dev.yaml"],
        spec="images/nope.yaml",
    )


def test_cli_lock_deps_with_bad_input(fleet: Path) -> None:
    write_spec(fleet / "s.yaml", pip={"tqdm": "1.*"}, pip_requirements="reqs.txt")
    assert_refused(
        invoke("lock-deps", "s.yaml"), [f"s.yaml: pip.tqdm: expected {PIP_WORDS}, got '1.*'"]
    )
    write_spec(fleet / "s.yaml")  # nothing to write the requirements to
    assert_refused(
        invoke("lock-deps", "s.yaml"),
        ["s.yaml: pip_requirements: expected the path of the file to write, got nothing"],
    )
    write_spec(fleet / "s.yaml", base=f"{PUSH_REGISTRY}/ml/tf:9.9.9", pip_requirements="r.txt")
    assert_refused(
        invoke("lock-deps", "s.yaml"),
        [
            f"s.yaml: base: expected an image pinned in {fleet / 'images.lock.yaml'} (run: tfenv "
            "lock inventory.py, with the base among the fleet's images), got "
            f"{PUSH_REGISTRY}/ml/tf:9.9.9"
        ],
    )


def test_cli_never_echoes_a_secret_file_value(fleet: Path) -> None:
    """Even with several problems at once, across the spec and the fleet."""
    write_spec(
        fleet / "s.yaml",
        name="other.test/team/tf-dev",
        build_args={"A": f"x{SECRET_FILE_VALUE}x", "B": f"{SECRET_ENV_VALUE}"},
    )
    result = invoke("build", "s.yaml")
    assert_refused(
        result,
        [
            "s.yaml: name: expected an image in a registry inventory.py declares under "
            "registries (with its login); declared: registry.test:5000, got other.test",
            "s.yaml: build_args.A: expected a value that is not secret 'token' (build "
            "arguments are kept in the image's history)",
            "s.yaml: build_args.B: expected a value that is not secret 'reg_pw' (build "
            "arguments are kept in the image's history)",
        ],
    )
    assert SECRET_FILE_VALUE not in result.output
    assert SECRET_ENV_VALUE not in result.output
