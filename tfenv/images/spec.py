"""A team image spec (``images/*.yaml``): what ``tfenv image build`` makes.

Every input is pinned: the base image by digest (through the fleet's lock),
apt packages by exact version, pip packages by exact version and hash (a
requirements file ``tfenv image lock-deps`` writes). The tag follows the
team's scheme, ``vMAJOR.MINOR[.PATCH]-tfX.Y.Z``; never ``latest``. Nothing
secret belongs here: build arguments end up in the image's history, so a
secret-looking one is refused.

Example (``images/team-dev.yaml``)::

    inventory: inventories/gpu.py        # its registries, secrets and image lock
    name: registry.example.internal/team/tf-dev
    version: v1.2
    tf_version: 2.17.1
    base: registry.example.internal/ml/tensorflow:2.17.1-gpu-jupyter
    python: /usr/bin/python3
    user: {name: researcher, uid: 1000, gid: 1000}
    apt: {openssh-server: "1:8.9p1-3ubuntu0.10", tini: "0.19.0-1"}
    pip: {tqdm: "4.67.1"}
    pip_requirements: images/team-dev.requirements.txt
    files: {/etc/skel/.team-motd: images/files/motd}
    build_args: {PIP_INDEX_URL: "https://pypi.example.internal/simple"}
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, ValidationError

from tfenv.images.lock import _StrictLoader
from tfenv.images.reference import NAME_RE, pinned_tag_problem
from tfenv.model.problems import Problem
from tfenv.model.spec import (
    ABS_PATH,
    APT_VERSION,
    PATH_WORDS,
    SYSTEM_DIRS,
    Strict,
    User,
    matching,
)
from tfenv.paths import resolve_path

MAX_SPEC_BYTES = 256 * 1024
TEAM_VERSION = r"^v\d+\.\d+(\.\d+)?$"
TF_VERSION = r"^\d+\.\d+\.\d+$"
APT_NAME = r"^[a-z0-9][a-z0-9+.-]{0,127}$"
# PEP 508 names (normalised later) and PEP 440 public versions, exact only.
PIP_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$"
PIP_VERSION = r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$"
BUILD_ARG_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
BUILD_ARG_VALUE = r"^[ -~]{0,1024}$"  # printable ASCII, one line
# Names that say "I am a credential": such a value would sit in the image's
# history for anyone who can pull it.
SECRET_WORDS = re.compile(
    r"pass|pwd|secret|token|key|cred|auth|cookie|private|session|signature", re.IGNORECASE
)
# Values that look like credentials whatever their name.
SECRET_SHAPES = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),  # GitHub tokens
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),  # Slack tokens
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."),  # a JWT
    re.compile(r"://[^/@\s]+:[^/@\s]+@"),  # a password inside a URL
)
PIP_HINT = "an exact version such as 1.26.4 (tfenv image lock-deps pins it with its hash)"


NOT_A_CREDENTIAL = (
    "build arguments are kept in the image's history; give secrets to containers "
    "at run time (secrets: in the group data)"
)


def _no_secret_shape(value: str) -> None:
    if any(shape.search(value) for shape in SECRET_SHAPES):
        raise ValueError(
            f"a value that is not a credential (it looks like one: {NOT_A_CREDENTIAL})"
        )


def _no_secret_name(name: str) -> None:
    if SECRET_WORDS.search(name):
        raise ValueError(
            "a build argument that is not a credential (its name says it is one; "
            f"{NOT_A_CREDENTIAL})"
        )


TeamVersion = matching(TEAM_VERSION, "a version of the team scheme such as v1.2 or v1.2.3")
TfVersion = matching(TF_VERSION, "a TensorFlow version such as 2.17.1")
AptName = matching(APT_NAME, "a Debian package name such as openssh-server")
AptVersion = matching(APT_VERSION, "an exact package version such as 1:9.2p1-2+deb12u3")
PipName = matching(PIP_NAME, "a Python package name such as numpy")
PipVersion = matching(PIP_VERSION, PIP_HINT)
BuildArgName = matching(
    BUILD_ARG_NAME, "a build argument name such as PIP_INDEX_URL", _no_secret_name
)
BuildArgValue = matching(
    BUILD_ARG_VALUE, "printable ASCII on one line (at most 1024)", _no_secret_shape
)
ImagePath = matching(ABS_PATH, PATH_WORDS)


def _a_file(value: str) -> None:
    if value.endswith("/") or value.rstrip("/") in SYSTEM_DIRS:
        raise ValueError("the path of a file in the image such as /etc/team/motd (not a directory)")


FilePath = matching(ABS_PATH, PATH_WORDS, _a_file)


def _image_name(value: str) -> str:
    if not NAME_RE.fullmatch(value) or ":" in value.rsplit("/", 1)[-1]:
        raise ValueError(
            "an image name without tag such as registry.example.com/team/tf-dev "
            "(the tag comes from version and tf_version)"
        )
    if "/" not in value or not re.match(r"[^/]*[.:]|localhost/", value):
        raise ValueError(
            "an image name that starts with its registry, such as "
            "registry.example.com/team/tf-dev (tfenv pushes there)"
        )
    return value


def _pinned_base(value: str) -> str:
    why = pinned_tag_problem(value)
    if why:
        raise ValueError(f"{why}; its digest comes from the lock")
    return value


ImageName = Annotated[str, AfterValidator(_image_name)]
BaseRef = Annotated[str, AfterValidator(_pinned_base)]


class ImageSpec(Strict):
    """One team image. Paths are relative to the directory tfenv runs from."""

    inventory: str = Field(min_length=1)
    name: ImageName
    version: TeamVersion
    tf_version: TfVersion
    base: BaseRef
    python: ImagePath = "/usr/bin/python3"
    user: User
    apt: dict[AptName, AptVersion] = Field(default_factory=dict)
    pip: dict[PipName, PipVersion] = Field(default_factory=dict)
    pip_requirements: str | None = None
    files: dict[FilePath, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    build_args: dict[BuildArgName, BuildArgValue] = Field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.version}-tf{self.tf_version}"

    @property
    def reference(self) -> str:
        """``name:tag`` as hosts pull it (and as the lock names it)."""
        return f"{self.name}:{self.tag}"

    def pip_inputs(self, base_digest: str) -> str:
        """What the requirements file was resolved from: the base image, the
        Python in it and the declared packages. A change makes it stale."""
        text = json.dumps([base_digest, self.python, sorted(self.pip.items())])
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class LoadedSpec:
    path: Path
    spec: ImageSpec


def load_spec(path: Path) -> tuple[LoadedSpec | None, list[Problem]]:
    """The spec at ``path``, or every problem with it (``Problem.host`` is the file)."""
    where = str(path)
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            return None, [Problem(where, "(file)", f"a spec under {MAX_SPEC_BYTES} bytes")]
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(where, "(file)", "an image spec file such as images/team-dev.yaml")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(where, "(file)", "a readable UTF-8 file", type(exc).__name__)]
    try:
        data: Any = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        return None, [Problem(where, "(file)", f"valid YAML{line}", str(exc).splitlines()[0])]
    except ValueError as exc:  # the strict loader's aliases / duplicate keys
        return None, [Problem(where, "(file)", str(exc))]
    if not isinstance(data, dict):
        return None, [Problem(where, "(file)", "a mapping of spec fields (see images/README.md)")]
    try:
        spec = ImageSpec.model_validate(data)
    except ValidationError as exc:
        from tfenv.model.load import from_pydantic

        return None, from_pydantic(where, exc, ImageSpec)
    if spec.pip and not spec.pip_requirements:
        expected = "the requirements file with hashes for the pip packages (write it with: "
        return None, [Problem(where, "pip_requirements", f"{expected}tfenv image lock-deps SPEC)")]
    return LoadedSpec(path, spec), []


def file_problems(loaded: LoadedSpec, base_dir: Path) -> list[Problem]:
    """The files the spec names exist and are regular files."""
    where = str(loaded.path)
    problems = []
    named = {f"files.{dest}": source for dest, source in loaded.spec.files.items()}
    if loaded.spec.pip_requirements:
        named["pip_requirements"] = loaded.spec.pip_requirements
    named["inventory"] = loaded.spec.inventory
    for field, source in named.items():
        if not resolve_path(source, base_dir).is_file():
            hint = (
                "; write it with: tfenv image lock-deps " + where if field.startswith("pip") else ""
            )
            problems.append(Problem(where, field, f"an existing file{hint}", repr(source)))
    return problems
