"""`tfenv lock`'s logic: which lock files and images, resolving them against a registry
stand-in on 127.0.0.1, and what changed in the lock."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_registry_client import (
    ACCEPT,
    BASIC_ROBOT,
    INDEX_TYPES,
    MANIFEST_TYPES,
    Reply,
    ScriptedServer,
    scripted_registry,
)

from tfenv.images.lock import LockedImage, dump_lock
from tfenv.images.locking import LockPlan, lock_changes, plan_locks, registry_of, resolve_plan
from tfenv.images.registry import RegistryClient
from tfenv.model.secrets import SecretValue

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
D = "sha256:" + "d" * 64
USER = {"name": "alice", "uid": 2001, "gid": 2001}


def host(name: str, **data: Any) -> SimpleNamespace:
    """What plan_locks reads of a pyinfra Host: its name and data."""
    return SimpleNamespace(name=name, data=SimpleNamespace(dict=lambda: dict(data)))


def container(image: str) -> dict[str, Any]:
    return {"image": image, "user": USER}


@pytest.mark.parametrize(
    ("reference", "registry"),
    [
        ("registry.example:5000/ml/tf:2.17", ("registry.example:5000", "ml/tf")),
        ("registry.example/ml/tf:2.17", ("registry.example", "ml/tf")),
        ("reg:5000/tf:1", ("reg:5000", "tf")),
        ("localhost/tf:1", ("localhost", "tf")),
        ("ml/tf:2.17", ("registry-1.docker.io", "ml/tf")),
        ("ml/tf/x:2.17", ("registry-1.docker.io", "ml/tf/x")),
        ("ubuntu:22.04", ("registry-1.docker.io", "library/ubuntu")),
        ("registry.example", ("registry-1.docker.io", "library/registry.example")),
    ],
)
def test_registry_of(reference: str, registry: tuple[str, str]) -> None:
    assert registry_of(reference) == registry


# --- planning -----------------------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TFENV_TEST_LOCK_PW", "right-password")
    monkeypatch.delenv("TFENV_TEST_UNSET", raising=False)
    return tmp_path


def test_hosts_sharing_a_lock_share_one_plan(base: Path) -> None:
    (base / "images.lock.yaml").write_text(dump_lock({"ml/old:1": LockedImage("ml/old:1", A)}))
    hosts = [
        host("broken", gpu_count=-1, image_lock=5),  # skipped, the next ones still planned
        host(
            "a",
            image_lock="images.lock.yaml",
            containers={"x": container("reg.test/ml/tf:1"), "y": container("ml/tf:latest")},
            gpu_check_image="nvidia/cuda:12.4.1-base",
            ssh_port=22,  # pyinfra's own keys are not tfenv's
        ),
        host(
            "b", image_lock=str(base / "images.lock.yaml"), containers={"x": container("ml/tf:2")}
        ),
        host("d", containers={"x": container("ml/tf:3")}),  # not planned, the next ones are
        host("e"),
        host("c", image_lock="other.lock.yaml"),
    ]
    plans, problems = plan_locks(hosts, base)
    assert problems == [
        "broken: invalid data (2 error(s)); run tfenv validate for details",
        "a: image 'ml/tf:latest': expected a pinned version tag, not the floating tag 'latest'",
        "d: image_lock: a lock file path, images are declared",
    ]
    main, other = base / "images.lock.yaml", base / "other.lock.yaml"
    assert set(plans) == {main, other}
    assert plans[main].path == main
    assert plans[main].images == {
        "reg.test/ml/tf:1",
        "nvidia/cuda:12.4.1-base",
        "ml/tf:2",
        "ml/old:1",
    }
    assert plans[main].clients == {}
    assert (plans[other].path, plans[other].images, plans[other].clients) == (other, set(), {})


def test_registry_problems_do_not_stop_the_others(base: Path) -> None:
    registries = {
        "reg.a": {"username": "robot", "password_secret": "undeclared"},
        "reg.b": {"username": "robot", "password_secret": "unset"},
        "reg.c": {"username": "robot", "password_secret": "pw"},
    }
    secrets = {"unset": {"env": "TFENV_TEST_UNSET"}, "pw": {"env": "TFENV_TEST_LOCK_PW"}}
    plans, problems = plan_locks(
        [host("h", image_lock="l.yaml", registries=registries, secrets=secrets)], base
    )
    assert problems == [
        "h: registries.reg.a: 'undeclared'",
        "h: registries.reg.b: secret 'unset': expected environment variable TFENV_TEST_UNSET "
        "to be set on the control machine (it is not)",
    ]
    assert list(plans[base / "l.yaml"].clients) == ["reg.c"]


def test_the_first_host_declaring_a_registry_gives_its_client(base: Path) -> None:
    good = {"username": "robot", "password_secret": "pw"}
    secrets = {"pw": {"env": "TFENV_TEST_LOCK_PW"}}
    first = host("first", image_lock="l.yaml", registries={"reg.a": good}, secrets=secrets)
    # The second host's reg.a is never looked at (its secret is missing), reg.b still is.
    second = host(
        "second",
        image_lock="l.yaml",
        registries={"reg.a": {"username": "x", "password_secret": "gone"}, "reg.b": good},
        secrets=secrets,
    )
    plans, problems = plan_locks([first, second], base)
    assert problems == []
    clients = plans[base / "l.yaml"].clients
    assert list(clients) == ["reg.a", "reg.b"]
    assert clients["reg.a"].host == "reg.a"
    assert clients["reg.a"].base_url == "https://reg.a"


# --- resolving against the registry stand-in ----------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScriptedServer, Path]]:
    with scripted_registry(tmp_path_factory.mktemp("locking")) as served:
        yield served


@pytest.fixture
def registry(served: tuple[ScriptedServer, Path]) -> tuple[ScriptedServer, Path]:
    server, ca = served
    server.seen = []
    server.script = lambda method, path, headers: Reply(404)
    return server, ca


INDEX = b'{"manifests": [{"digest": "%s", "platform": {"os": "linux", "architecture": "amd64"}}]}'


def answers(method: str, path: str, headers: Any) -> Reply:
    """reg.test's tags: a single manifest, a multi-arch index, and a failing one."""
    if headers.get("Authorization") != BASIC_ROBOT:
        return Reply(401, {"WWW-Authenticate": 'Basic realm="reg"'})
    if path == "/v2/ml/tf/manifests/1":
        return Reply(200, {"Content-Type": MANIFEST_TYPES[0], "Docker-Content-Digest": A})
    if path == "/v2/ml/tf/manifests/2":
        headers = {"Content-Type": INDEX_TYPES[0], "Docker-Content-Digest": B}
        return Reply(200, headers, INDEX % C.encode())
    if path == "/v2/ml/tf/manifests/":  # a lock entry without a tag
        return Reply(200, {"Content-Type": MANIFEST_TYPES[0], "Docker-Content-Digest": D})
    if path == "/v2/ml/tf/manifests/gone":
        return Reply(hang_up=True)
    return Reply(404)


def test_plan_then_resolve_with_the_declared_registry(registry, base: Path) -> None:
    server, ca = registry
    server.script = answers
    shutil.copy(ca, base / "ca.pem")
    (base / "secrets").mkdir()
    (base / "secrets" / "pw").write_text("right-password\n")
    (base / "secrets" / "pw").chmod(0o600)
    data = {
        "image_lock": "images.lock.yaml",
        "registries": {
            "reg.test:5000": {
                "username": "robot",
                "password_secret": "pw",
                "ca_file": "ca.pem",  # relative to base
                "endpoint": server.url,
            }
        },
        "secrets": {"pw": {"file": "secrets/pw"}},  # relative to base too
        "containers": {
            "x": container("reg.test:5000/ml/tf:1"),
            "y": container("reg.test:5000/ml/tf:2"),
            "z": container("reg.test:5000/ml/tf:3"),
        },
        "gpu_check_image": "reg.test:5000/ml/tf:gone",
    }
    plans, problems = plan_locks([host("h", **data)], base)
    assert problems == []
    said: list[str] = []
    resolved, problems = resolve_plan(plans[base / "images.lock.yaml"], said.append)
    assert resolved == {
        "reg.test:5000/ml/tf:1": LockedImage("reg.test:5000/ml/tf:1", A),
        "reg.test:5000/ml/tf:2": LockedImage("reg.test:5000/ml/tf:2", B, C),
    }
    assert problems == [
        "reg.test:5000/ml/tf:3: reg.test:5000/ml/tf:3: no such tag",
        "reg.test:5000/ml/tf:gone: Remote end closed connection without response",
    ]
    assert said == [
        f"  [1/4] reg.test:5000/ml/tf:1  {A}",
        f"  [2/4] reg.test:5000/ml/tf:2  {B}",
        "  [3/4] reg.test:5000/ml/tf:3  FAILED",
        "  [4/4] reg.test:5000/ml/tf:gone  FAILED",
    ]
    assert [(s.method, s.path, s.headers.get("Accept")) for s in server.seen[:3]] == [
        ("HEAD", "/v2/ml/tf/manifests/1", ACCEPT),
        ("HEAD", "/v2/ml/tf/manifests/1", ACCEPT),
        ("HEAD", "/v2/ml/tf/manifests/2", ACCEPT),
    ]


def test_an_entry_without_a_tag_asks_for_the_empty_tag(registry) -> None:
    server, ca = registry
    server.script = answers
    client = RegistryClient(
        "reg.test", username="robot", password=SecretValue("pw", "right-password"),
        ca_file=ca, endpoint=server.url,
    )  # fmt: skip
    plan = LockPlan(Path("l.yaml"), {"reg.test/ml/tf"}, {"reg.test": client})
    resolved, problems = resolve_plan(plan, lambda line: None)
    assert (resolved, problems) == ({"reg.test/ml/tf": LockedImage("reg.test/ml/tf", D)}, [])


def test_an_undeclared_registry_gets_an_anonymous_client(registry) -> None:
    # Nothing declared for 127.0.0.1:PORT: a plain client, which does not trust the test CA.
    server, _ = registry
    reference = f"{server.host}/ml/tf:1"
    said: list[str] = []
    resolved, problems = resolve_plan(LockPlan(Path("l.yaml"), {reference}), said.append)
    assert resolved == {}
    assert problems == [
        f"{reference}: {server.host}: TLS certificate not trusted (unable to get local issuer "
        "certificate); set ca_file for this registry to the CA that signed it"
    ]
    assert said == [f"  [1/1] {reference}  FAILED"]


def test_an_undeclared_registry_that_is_not_there() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    reference = f"127.0.0.1:{port}/ml/tf:1"
    _, problems = resolve_plan(LockPlan(Path("l.yaml"), {reference}), lambda line: None)
    assert problems == [
        f"{reference}: 127.0.0.1:{port}: cannot connect ([Errno 111] Connection refused)"
    ]


# --- what changed -------------------------------------------------------------------


def test_lock_changes(tmp_path: Path) -> None:
    path = tmp_path / "images.lock.yaml"
    path.write_text(
        dump_lock(
            {
                "ml/same:1": LockedImage("ml/same:1", A, B),
                "ml/moved:1": LockedImage("ml/moved:1", A),
                "ml/platform:1": LockedImage("ml/platform:1", A, B),
                "ml/unused:1": LockedImage("ml/unused:1", A),
            }
        )
    )
    resolved = {
        "ml/new:1": LockedImage("ml/new:1", C),
        "ml/same:1": LockedImage("ml/same:1", A, B),
        "ml/platform:1": LockedImage("ml/platform:1", A, C),
        "ml/moved:1": LockedImage("ml/moved:1", D),
    }
    assert lock_changes(path, resolved) == [
        f"ml/moved:1: tag moved from {A} to {D}",
        f"ml/new:1: not in the lock (registry has {C})",
        f"ml/platform:1: its linux/amd64 manifest moved from {B} to {C} (the index digest is "
        "unchanged)",
    ]


def test_lock_changes_without_a_lock(tmp_path: Path) -> None:
    resolved = {"ml/b:1": LockedImage("ml/b:1", B), "ml/a:1": LockedImage("ml/a:1", A)}
    assert lock_changes(tmp_path / "none.yaml", resolved) == [
        f"ml/a:1: not in the lock (registry has {A})",
        f"ml/b:1: not in the lock (registry has {B})",
    ]
    assert lock_changes(tmp_path / "none.yaml", {}) == []


def test_a_registry_answering_garbage_is_one_problem_line_not_a_traceback(registry) -> None:
    server, ca = registry

    def garbage(method: str, path: str, headers: Any) -> Reply:
        if path == "/v2/ml/tf/manifests/notjson":  # an index body that is not JSON
            return Reply(200, {"Content-Type": INDEX_TYPES[0], "Docker-Content-Digest": B}, b"<h")
        if path == "/v2/ml/tf/manifests/nodigest":  # an index entry without its digest
            body = b'{"manifests": [{"platform": {"os": "linux", "architecture": "amd64"}}]}'
            return Reply(200, {"Content-Type": INDEX_TYPES[0], "Docker-Content-Digest": B}, body)
        return answers(method, path, headers)

    server.script = garbage
    client = RegistryClient(
        "reg.test", username="robot", password=SecretValue("pw", "right-password"),
        ca_file=ca, endpoint=server.url,
    )  # fmt: skip
    plan = LockPlan(
        Path("l.yaml"), {"reg.test/ml/tf:notjson", "reg.test/ml/tf:nodigest", "reg.test/ml/tf:1"},
        {"reg.test": client},
    )  # fmt: skip
    said: list[str] = []
    resolved, problems = resolve_plan(plan, said.append)
    assert resolved == {"reg.test/ml/tf:1": LockedImage("reg.test/ml/tf:1", A)}  # the others go on
    assert problems == [
        "reg.test/ml/tf:nodigest: the registry's answer could not be read (KeyError: 'digest'); "
        "is reg.test a Docker registry?",
        "reg.test/ml/tf:notjson: the registry's answer could not be read (JSONDecodeError: "
        "Expecting value: line 1 column 1 (char 0)); is reg.test a Docker registry?",
    ]
    assert said[1:] == ["  [2/3] reg.test/ml/tf:nodigest  FAILED",
                        "  [3/3] reg.test/ml/tf:notjson  FAILED"]  # fmt: skip
