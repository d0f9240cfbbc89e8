"""Docker engine versions, apt repository keys and list files, and failing one host:
the cases the YAML fixtures (tests/operations/) leave out, exact values out."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FunctionCommand, OperationError, StringCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from tfenv.facts.gpu import GpuHostState
from tfenv.operations.apt_repository import keyring_for, repository_line, signed_repository
from tfenv.operations.docker_engine import engine_packages
from tfenv.operations.failure import fail_host, report_failure

LAB_KEY = Path(__file__).parent / "fixtures" / "keys" / "lab-test.asc"
ARMOR = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"

# -- docker_engine: which packages at which version ---------------------------------

DEBIAN = GpuHostState(os_id="debian", os_version="12", os_codename="bookworm")
UBUNTU = GpuHostState(os_id="ubuntu", os_version="24.04", os_codename="noble")


def test_docker_repository_versions_are_completed_per_distribution() -> None:
    apt = "5:27.3.1-1~debian.12~bookworm"
    assert engine_packages(DEBIAN, "docker", "27.3.1") == {"docker-ce": apt, "docker-ce-cli": apt}
    apt = "5:27.3.1-1~ubuntu.24.04~noble"
    assert engine_packages(UBUNTU, "docker", "27.3.1") == {"docker-ce": apt, "docker-ce-cli": apt}


@pytest.mark.parametrize("version", ["5:27.3.1-1~debian.12~bookworm", "5:27.3.1", "27.3.1-1"])
def test_a_full_apt_version_is_taken_as_is(version: str) -> None:
    # either an epoch or a revision makes it an apt version already
    assert engine_packages(DEBIAN, "docker", version) == {
        "docker-ce": version,
        "docker-ce-cli": version,
    }


def test_distribution_versions_glob_unless_full() -> None:
    assert engine_packages(DEBIAN, "distribution", "20.10.24") == {"docker.io": "20.10.24*"}
    full = "20.10.24+dfsg1-1+deb12u1+b6"
    assert engine_packages(DEBIAN, "distribution", full) == {"docker.io": full}
    assert engine_packages(DEBIAN, "distribution", "1:20.10") == {"docker.io": "1:20.10"}
    # the distribution's own engine needs no codename or known OS
    assert engine_packages(GpuHostState(), "distribution", "26.1") == {"docker.io": "26.1*"}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            GpuHostState(),
            "unknown OS : Docker's repository is used for Debian and Ubuntu only",
        ),
        (
            GpuHostState(os_id="rocky", os_version="9.4", os_codename="blue"),
            "rocky 9.4: Docker's repository is used for Debian and Ubuntu only",
        ),
        (
            GpuHostState(os_id="debian", os_version="13"),
            "debian 13: Docker's repository is used for Debian and Ubuntu only",
        ),
        (
            GpuHostState(os_id="ubuntu", os_version="26.04"),
            "ubuntu 26.04: Docker's repository is used for Debian and Ubuntu only",
        ),
    ],
)
def test_docker_repository_needs_debian_or_ubuntu_with_a_codename(
    state: GpuHostState, message: str
) -> None:
    with pytest.raises(OperationError) as raised:
        engine_packages(state, "docker", "27.3.1")
    assert raised.value.args == (message,)


# -- apt_repository: keyring names, key files, list files ------------------------------


def test_the_repository_line_of_a_flat_repository() -> None:
    assert repository_line("https://r.test/deb", "/usr/share/keyrings/cuda.gpg") == (
        "deb [signed-by=/usr/share/keyrings/cuda.gpg] https://r.test/deb /\n"
    )
    assert repository_line("https://r.test", "/k.asc", "noble", ("stable", "main")) == (
        "deb [signed-by=/k.asc] https://r.test noble stable main\n"
    )


def test_keyring_names_follow_the_key_format(tmp_path: Path) -> None:
    binary = tmp_path / "binary.gpg"
    binary.write_bytes(b"\x99\x01\x0d" + b"\x00" * 100)
    indented = tmp_path / "indented.asc"  # leading blank lines before the armor
    indented.write_bytes(b"\n  \n" + ARMOR + b"\n")
    assert keyring_for("https://download.docker.com/linux/debian/gpg", "docker") == (
        "/usr/share/keyrings/docker.asc"
    )
    assert keyring_for(str(LAB_KEY), "nvidia") == "/usr/share/keyrings/nvidia.asc"
    assert keyring_for(str(indented), "cuda") == "/usr/share/keyrings/cuda.asc"
    assert keyring_for(str(binary), "cuda") == "/usr/share/keyrings/cuda.gpg"
    # unreadable: named .gpg; signed_repository then says what is wrong with it
    assert keyring_for(str(tmp_path / "missing"), "cuda") == "/usr/share/keyrings/cuda.gpg"


def run(op, facts: dict, **kwargs: Any) -> list[Any]:
    host = create_host(FakeState(), name="gpu1", facts=facts)
    state = host.state
    with ctx_state.use(state), ctx_host.use(host):
        commands = list(op._inner(**kwargs))
    return [
        (c.function.__name__, c.args) if isinstance(c, FunctionCommand) else c
        for c in (c.get_raw_value() if isinstance(c, StringCommand) else c for c in commands)
    ]


NVIDIA = {
    "list_file": "/etc/apt/sources.list.d/nvidia-container-toolkit.list",
    "url": "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)",
    "key": str(LAB_KEY),
    "keyring": "/usr/share/keyrings/nvidia-container-toolkit-keyring.asc",
    "replaces": ["nvidia.github.io/nvidia-docker"],
}
IN_PLACE = {
    "keyrings": {NVIDIA["keyring"]: hashlib.sha256(LAB_KEY.read_bytes()).hexdigest()},
    "apt_sources": {NVIDIA["list_file"]: repository_line(NVIDIA["url"], NVIDIA["keyring"])},
}


def test_comments_and_blank_lines_do_not_keep_a_stale_list_file() -> None:
    stale = "# from the old install guide\n\ndeb https://nvidia.github.io/nvidia-docker/d /\n"
    sources = {**IN_PLACE["apt_sources"], "/etc/apt/sources.list.d/nvidia-docker.list": stale}
    facts = {"gpu.GpuHost": {**IN_PLACE, "apt_sources": sources}}
    assert run(signed_repository, facts, **NVIDIA) == [
        "rm -f /etc/apt/sources.list.d/nvidia-docker.list",
        "apt-get update -q",
    ]


def test_an_unreadable_or_empty_key_is_refused(tmp_path: Path) -> None:
    facts = {"gpu.GpuHost": IN_PLACE}
    missing = str(tmp_path / "missing.asc")
    with pytest.raises(OperationError) as raised:
        run(signed_repository, facts, **{**NVIDIA, "key": missing})
    assert raised.value.args == (
        f"repository key {missing}: cannot read it on this machine (No such file or "
        "directory); point 'key' at the repository's signing key file",
    )
    empty = tmp_path / "empty.asc"
    empty.write_bytes(b"")
    with pytest.raises(OperationError) as raised:
        run(signed_repository, facts, **{**NVIDIA, "key": str(empty)})
    assert raised.value.args == (f"repository key {empty}: the file is empty",)


# -- failure: one host fails, the others go on --------------------------------------------


class LoggingHost:
    def __init__(self) -> None:
        self.said: list[tuple[str, str, Any]] = []

    def log_styled(self, text: str, fg: str, log_func) -> None:
        self.said.append((text, fg, log_func))


def test_a_failure_is_logged_in_red_as_an_error_and_fails_the_host() -> None:
    host = LoggingHost()
    assert report_failure(None, host, "Secure Boot is on") is False
    assert host.said == [("Error: Secure Boot is on", "red", logging.getLogger("pyinfra").error)]


def test_fail_host_runs_report_failure_with_the_message() -> None:
    command = fail_host("daemon.json is not valid JSON")
    assert (command.function, command.args, command.kwargs) == (
        report_failure,
        ("daemon.json is not valid JSON",),
        {},
    )
    host = LoggingHost()
    assert command.function(None, host, *command.args, **command.kwargs) is False
    assert [text for text, _, _ in host.said] == ["Error: daemon.json is not valid JSON"]
