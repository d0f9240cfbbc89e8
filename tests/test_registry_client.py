"""The registry client against a token-auth registry stand-in on 127.0.0.1 (TLS, bearer).

The lab registry (tests/test_lab_registry.py) covers basic auth with real
docker-registry; this covers the bearer-token flow public registries use,
and a multi-arch index, which the lab's registry does not serve.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tls_server import tls_server

from tfenv.images.registry import (
    ACCEPT,
    INDEX_TYPES,
    MANIFEST_TYPES,
    RegistryClient,
    RegistryError,
    Resolved,
    parse_challenge,
)
from tfenv.model.secrets import SecretValue

INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPES[0],
        "manifests": [
            {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
).encode()
INDEX_DIGEST = "sha256:" + hashlib.sha256(INDEX).hexdigest()
MANIFEST_DIGEST = "sha256:" + "c" * 64
TOKEN = "token-for-tests"


class Registry(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _challenge(self) -> None:
        self.send_response(401)
        realm = f"https://127.0.0.1:{self.server.server_port}/token"
        self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="test"')
        self.end_headers()

    def _answer(self, body: bytes | None) -> None:
        if self.path.startswith("/token"):
            wanted = "Basic " + base64.b64encode(b"robot:right-password").decode()
            if self.headers.get("Authorization") != wanted:
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps({"token": TOKEN}).encode())
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._challenge()
        if self.path == "/v2/ml/tf/manifests/multi":
            self.send_response(200)
            self.send_header("Content-Type", INDEX_TYPES[0])
            self.send_header("Docker-Content-Digest", INDEX_DIGEST)
            self.end_headers()
            if body is not None:
                self.wfile.write(INDEX)
            return
        if self.path == "/v2/ml/tf/manifests/single":
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Docker-Content-Digest", MANIFEST_DIGEST)
            self.end_headers()
            return
        self.send_response(404)
        self.end_headers()

    def do_HEAD(self) -> None:
        self._answer(None)

    def do_GET(self) -> None:
        self._answer(b"")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    with tls_server(server, tmp_path_factory.mktemp("registry")) as ca:
        yield f"127.0.0.1:{server.server_port}", ca


def client(registry: tuple[str, Path], password: str = "right-password") -> RegistryClient:
    host, ca = registry
    return RegistryClient(host, username="robot", password=SecretValue("pw", password), ca_file=ca)


def test_bearer_token_flow_and_single_manifest(registry) -> None:
    resolved = client(registry).resolve("ml/tf", "single")
    assert (resolved.digest, resolved.platform_digest) == (MANIFEST_DIGEST, None)


def test_index_gives_the_amd64_platform_digest(registry) -> None:
    resolved = client(registry).resolve("ml/tf", "multi")
    assert resolved.digest == INDEX_DIGEST
    assert resolved.platform_digest == "sha256:" + "b" * 64


def test_wrong_password_is_refused_without_echoing_it(registry) -> None:
    with pytest.raises(RegistryError, match="token service refused") as refused:
        client(registry, "not-the-password-42").resolve("ml/tf", "single")
    assert "not-the-password-42" not in str(refused.value)


def test_unknown_tag(registry) -> None:
    with pytest.raises(RegistryError, match="no such tag"):
        client(registry).resolve("ml/tf", "missing")


# --- a scripted registry: each test says what it answers and sees every request ------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang_up: bool = False  # close the connection without any answer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class Scripted(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _serve(self) -> None:
        # The path as sent: http.server collapses a leading "//" in self.path.
        sent = self.requestline.split(" ")[1]
        self.server.seen.append(Seen(self.command, sent, dict(self.headers.items())))
        reply = self.server.script(self.command, self.path, self.headers)
        if reply.hang_up:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_HEAD = _serve


Script = Callable[[str, str, Any], Reply]


class ScriptedServer(ThreadingHTTPServer):
    script: Script
    seen: list[Seen]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"


@contextlib.contextmanager
def scripted_registry(directory: Path) -> Iterator[tuple[ScriptedServer, Path]]:
    """An HTTPS registry stand-in on 127.0.0.1 and the CA that signed its certificate."""
    server = ScriptedServer(("127.0.0.1", 0), Scripted)
    server.script = lambda method, path, headers: Reply(404)
    server.seen = []
    with tls_server(server, directory) as ca:
        yield server, ca


@pytest.fixture(scope="module")
def scripted_module(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ScriptedServer, Path]]:
    with scripted_registry(tmp_path_factory.mktemp("scripted")) as served:
        yield served


@pytest.fixture
def scripted(scripted_module: tuple[ScriptedServer, Path]) -> tuple[ScriptedServer, Path]:
    server, ca = scripted_module
    server.seen = []
    server.script = lambda method, path, headers: Reply(404)
    return server, ca


BASIC_ROBOT = "Basic " + base64.b64encode(b"robot:right-password").decode()
MANIFEST = b'{"schemaVersion": 2}'


def manifest(digest: str | None = MANIFEST_DIGEST, media: str = MANIFEST_TYPES[0]) -> Reply:
    headers = {"Content-Type": media}
    if digest:
        headers["Docker-Content-Digest"] = digest
    return Reply(200, headers, MANIFEST)


def robot(server: ScriptedServer, ca: Path, **kwargs: Any) -> RegistryClient:
    options: dict[str, Any] = {
        "username": "robot",
        "password": SecretValue("pw", "right-password"),
        "ca_file": ca,
        "endpoint": server.url,
    }
    options.update(kwargs)
    return RegistryClient("registry.test:5000", **options)


def requests(server: ScriptedServer) -> list[tuple[str, str, str | None, str | None]]:
    return [
        (s.method, s.path, s.headers.get("Accept"), s.headers.get("Authorization"))
        for s in server.seen
    ]


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (
            '  Bearer realm="https://auth.test/token", service="reg", scope="repository:a:pull"  ',
            (
                "bearer",
                {
                    "realm": "https://auth.test/token",
                    "service": "reg",
                    "scope": "repository:a:pull",
                },
            ),
        ),
        ('Basic realm="Registry Realm"', ("basic", {"realm": "Registry Realm"})),
        ("Negotiate", ("negotiate", {})),
    ],
)
def test_parse_challenge(header: str, parsed: tuple[str, dict[str, str]]) -> None:
    assert parse_challenge(header) == parsed


def test_accept_lists_indexes_then_manifests() -> None:
    assert ACCEPT == (
        "application/vnd.oci.image.index.v1+json, "
        "application/vnd.docker.distribution.manifest.list.v2+json, "
        "application/vnd.oci.image.manifest.v1+json, "
        "application/vnd.docker.distribution.manifest.v2+json"
    )


def test_anonymous_head_of_a_manifest(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: manifest(
        media=MANIFEST_TYPES[1] + "; charset=utf-8"
    )
    answer = RegistryClient("registry.test:5000", ca_file=ca, endpoint=server.url + "/").resolve(
        "ml/tf", "2.17.0"
    )
    assert answer == Resolved(MANIFEST_DIGEST, MANIFEST_TYPES[1])
    assert requests(server) == [("HEAD", "/v2/ml/tf/manifests/2.17.0", ACCEPT, None)]


def test_the_tag_is_quoted_in_the_path(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: manifest()
    robot(server, ca).resolve("ml/tf", "a b")
    assert [s.path for s in server.seen] == ["/v2/ml/tf/manifests/a%20b"]


def test_basic_auth_is_sent_after_the_challenge_and_kept(scripted) -> None:
    server, ca = scripted

    def script(method: str, path: str, headers: Any) -> Reply:
        if headers.get("Authorization") != BASIC_ROBOT:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="reg"'})
        return manifest()

    server.script = script
    client = robot(server, ca)
    client.check()
    assert client.resolve("ml/tf", "1") == Resolved(MANIFEST_DIGEST, MANIFEST_TYPES[0])
    assert requests(server) == [
        ("GET", "/v2/", None, None),
        ("GET", "/v2/", None, BASIC_ROBOT),
        ("HEAD", "/v2/ml/tf/manifests/1", ACCEPT, BASIC_ROBOT),  # no second challenge
    ]


def test_basic_auth_needs_username_and_password(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(401, {"WWW-Authenticate": "Basic"})
    for client in (
        RegistryClient("registry.test:5000", ca_file=ca, endpoint=server.url),
        RegistryClient("registry.test:5000", username="robot", ca_file=ca, endpoint=server.url),
    ):
        with pytest.raises(RegistryError) as refused:
            client.resolve("ml/tf", "1")
        assert str(refused.value) == (
            "registry.test:5000 asks for a login: declare registries['registry.test:5000'] "
            "with username and password_secret"
        )


def bearer(realm: str, extra: str = "", token_body: bytes | None = None) -> Script:
    """A registry that asks for a bearer token at ``realm`` and issues TOKEN."""

    def script(method: str, path: str, headers: Any) -> Reply:
        if path.startswith("/token"):
            body = json.dumps({"token": TOKEN}).encode() if token_body is None else token_body
            return Reply(200, {"Content-Type": "application/json"}, body)
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}"{extra}'})
        return manifest()

    return script


def test_bearer_token_request_without_service_or_scope(scripted) -> None:
    server, ca = scripted
    server.script = bearer(f"{server.url}/token")
    assert robot(server, ca).resolve("ml/tf", "1").digest == MANIFEST_DIGEST
    assert requests(server) == [
        ("HEAD", "/v2/ml/tf/manifests/1", ACCEPT, None),
        ("GET", "/token?service=&scope=repository%3Aml%2Ftf%3Apull", None, BASIC_ROBOT),
        ("HEAD", "/v2/ml/tf/manifests/1", ACCEPT, f"Bearer {TOKEN}"),
    ]


def test_bearer_token_request_with_service_and_scope(scripted) -> None:
    server, ca = scripted
    server.script = bearer(f"{server.url}/token", ',service="reg",scope="repository:x:pull"')
    robot(server, ca).resolve("ml/tf", "1")
    assert server.seen[1].path == "/token?service=reg&scope=repository%3Ax%3Apull"


def test_bearer_token_without_a_password_is_asked_anonymously(scripted) -> None:
    server, ca = scripted
    server.script = bearer(f"{server.url}/token")
    for client in (
        RegistryClient("registry.test:5000", ca_file=ca, endpoint=server.url),
        RegistryClient("registry.test:5000", username="robot", ca_file=ca, endpoint=server.url),
    ):
        server.seen = []
        assert client.resolve("ml/tf", "1").digest == MANIFEST_DIGEST
        assert server.seen[1].headers.get("Authorization") is None


def test_the_check_logs_in_for_no_repository(scripted) -> None:
    server, ca = scripted
    server.script = bearer(f"{server.url}/token")
    robot(server, ca).check()
    assert requests(server) == [
        ("GET", "/v2/", None, None),
        ("GET", "/token?service=&scope=repository%3A%3Apull", None, BASIC_ROBOT),
        ("GET", "/v2/", None, f"Bearer {TOKEN}"),
    ]


def test_access_token_is_accepted(scripted) -> None:
    server, ca = scripted
    server.script = bearer(
        f"{server.url}/token", token_body=json.dumps({"access_token": TOKEN}).encode()
    )
    assert robot(server, ca).resolve("ml/tf", "1").digest == MANIFEST_DIGEST


def test_token_service_without_a_token(scripted) -> None:
    server, ca = scripted
    server.script = bearer(f"{server.url}/token", token_body=b'{"token": ""}')
    with pytest.raises(RegistryError) as refused:
        robot(server, ca).resolve("ml/tf", "1")
    assert str(refused.value) == "registry.test:5000: token service sent no token"


def test_token_service_refusal_message(scripted) -> None:
    server, ca = scripted

    def script(method: str, path: str, headers: Any) -> Reply:
        if path.startswith("/token"):
            return Reply(403)
        return Reply(401, {"WWW-Authenticate": f'Bearer realm="{server.url}/token"'})

    server.script = script
    with pytest.raises(RegistryError) as refused:
        robot(server, ca).resolve("ml/tf", "1")
    assert str(refused.value) == (
        "registry.test:5000: token service refused (403); check the username and password secret"
    )


def test_a_plain_http_token_service_gets_no_credentials(scripted) -> None:
    server, ca = scripted
    server.script = bearer(f"http://{server.host}/token")
    with pytest.raises(RegistryError) as refused:
        robot(server, ca).resolve("ml/tf", "1")
    assert str(refused.value) == (
        f"registry.test:5000: its token service 'http://{server.host}/token' is not https; "
        "tfenv does not send credentials there"
    )
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    ("challenge", "message"),
    [
        ('Digest realm="https://auth.test/"', "unsupported auth scheme 'digest'"),
        ('Bearer service="reg"', "unsupported auth scheme 'bearer'"),  # no realm
    ],
)
def test_unsupported_challenges(scripted, challenge: str, message: str) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(401, {"WWW-Authenticate": challenge})
    with pytest.raises(RegistryError) as refused:
        robot(server, ca).resolve("ml/tf", "1")
    assert str(refused.value) == f"registry.test:5000: {message}"


def test_a_401_without_a_challenge_is_a_refused_login(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(401)
    with pytest.raises(RegistryError) as refused:
        robot(server, ca).resolve("ml/tf", "1")
    assert str(refused.value) == (
        "registry.test:5000: login refused for ml/tf; check the username and password secret"
    )
    assert len(server.seen) == 1


def test_a_second_401_is_a_refused_login(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(401, {"WWW-Authenticate": "Basic"})
    with pytest.raises(RegistryError) as refused:
        robot(server, ca).resolve("ml/tf", "1")
    assert str(refused.value) == (
        "registry.test:5000: login refused for ml/tf; check the username and password secret"
    )
    assert requests(server) == [
        ("HEAD", "/v2/ml/tf/manifests/1", ACCEPT, None),
        ("HEAD", "/v2/ml/tf/manifests/1", ACCEPT, BASIC_ROBOT),
    ]


def test_the_check_is_refused_for_no_repository(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(401)
    with pytest.raises(RegistryError) as refused:
        robot(server, ca).check()
    assert str(refused.value) == (
        "registry.test:5000: login refused for ; check the username and password secret"
    )


@pytest.mark.parametrize(("status", "message"), [(404, "no such tag"), (500, "HTTP 500")])
def test_http_errors_of_the_head(scripted, status: int, message: str) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(status)
    with pytest.raises(RegistryError) as failed:
        robot(server, ca).resolve("ml/tf", "1")
    assert str(failed.value) == f"registry.test:5000/ml/tf:1: {message}"


def test_no_digest_header_means_the_manifest_is_hashed(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: manifest(None, MANIFEST_TYPES[0] + "; x=y")
    answer = robot(server, ca).resolve("ml/tf", "1")
    assert answer == Resolved("sha256:" + hashlib.sha256(MANIFEST).hexdigest(), MANIFEST_TYPES[0])
    assert [(s.method, s.headers.get("Accept")) for s in server.seen] == [
        ("HEAD", ACCEPT),
        ("GET", ACCEPT),
    ]


def test_no_content_type_at_all(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(
        200, {"Docker-Content-Digest": MANIFEST_DIGEST}
    )
    assert robot(server, ca).resolve("ml/tf", "1") == Resolved(MANIFEST_DIGEST, "")


def test_no_digest_and_no_content_type(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(200, {}, MANIFEST)
    digest = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
    assert robot(server, ca).resolve("ml/tf", "1") == Resolved(digest, "")


def index(*manifests: dict[str, Any]) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": list(manifests)}).encode()


def test_an_index_gives_its_digest_and_the_platform_digest(scripted) -> None:
    server, ca = scripted
    body = index(
        {"digest": "sha256:" + "1" * 64},  # an attestation: no platform
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": "sha256:" + "3" * 64, "platform": {"os": "windows", "architecture": "amd64"}},
        {"digest": "sha256:" + "4" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
    )
    server.script = lambda method, path, headers: Reply(
        200,
        {"Content-Type": INDEX_TYPES[1] + "; charset=utf-8", "Docker-Content-Digest": INDEX_DIGEST},
        body,
    )
    client = robot(server, ca)
    assert client.resolve("ml/tf", "1") == Resolved(
        INDEX_DIGEST, INDEX_TYPES[1], "sha256:" + "4" * 64
    )
    assert client.resolve("ml/tf", "1", "linux/arm64").platform_digest == "sha256:" + "2" * 64
    assert [s.method for s in server.seen] == ["HEAD", "GET", "HEAD", "GET"]


def test_an_index_found_only_by_get(scripted) -> None:
    # HEAD gives neither digest nor index type; the GET's body is an index.
    server, ca = scripted
    body = index(
        {"digest": "sha256:" + "4" * 64, "platform": {"os": "linux", "architecture": "amd64"}}
    )

    def script(method: str, path: str, headers: Any) -> Reply:
        if method == "HEAD":
            return Reply(200)
        return Reply(200, {"Content-Type": INDEX_TYPES[0]}, body)

    server.script = script
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert robot(server, ca).resolve("ml/tf", "1") == Resolved(
        digest, INDEX_TYPES[0], "sha256:" + "4" * 64
    )


def test_the_platform_is_split_at_its_first_slash(scripted) -> None:
    server, ca = scripted
    body = index(
        {"digest": "sha256:" + "5" * 64, "platform": {"os": "linux/arm", "architecture": "v7"}},
        {"digest": "sha256:" + "6" * 64, "platform": {"os": "linux", "architecture": "arm/v7"}},
    )
    server.script = lambda method, path, headers: Reply(200, {"Content-Type": INDEX_TYPES[0]}, body)
    answer = robot(server, ca).resolve("ml/tf", "1", "linux/arm/v7")
    assert answer.platform_digest == "sha256:" + "6" * 64


@pytest.mark.parametrize("body", [index(), b"{}", index({"digest": "sha256:" + "1" * 64})])
def test_an_index_without_the_platform(scripted, body: bytes) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(200, {"Content-Type": INDEX_TYPES[0]}, body)
    with pytest.raises(RegistryError) as failed:
        robot(server, ca).resolve("ml/tf", "2.17.0")
    assert str(failed.value) == "2.17.0: the image index has no linux/amd64 manifest"


def test_the_get_may_ask_for_its_own_login(scripted) -> None:
    # Anonymous HEAD, token-protected GET: the GET's challenge is for the same repository.
    server, ca = scripted
    body = index(
        {"digest": "sha256:" + "4" * 64, "platform": {"os": "linux", "architecture": "amd64"}}
    )

    def script(method: str, path: str, headers: Any) -> Reply:
        if method == "HEAD":
            return Reply(
                200, {"Content-Type": INDEX_TYPES[0], "Docker-Content-Digest": INDEX_DIGEST}
            )
        if path.startswith("/token"):
            return Reply(200, {}, json.dumps({"token": TOKEN}).encode())
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return Reply(401, {"WWW-Authenticate": f'Bearer realm="{server.url}/token"'})
        return Reply(200, {"Content-Type": INDEX_TYPES[0]}, body)

    server.script = script
    robot(server, ca).resolve("ml/tf", "1")
    assert server.seen[2].path == "/token?service=&scope=repository%3Aml%2Ftf%3Apull"


def test_the_get_refused_names_the_repository(scripted) -> None:
    server, ca = scripted
    server.script = lambda method, path, headers: Reply(200) if method == "HEAD" else Reply(401)
    with pytest.raises(RegistryError) as refused:
        robot(server, ca).resolve("ml/tf", "1")
    assert str(refused.value) == (
        "registry.test:5000: login refused for ml/tf; check the username and password secret"
    )


def test_an_untrusted_certificate(scripted) -> None:
    server, _ = scripted
    with pytest.raises(RegistryError) as refused:
        RegistryClient("registry.test:5000", endpoint=server.url).resolve("ml/tf", "1")
    assert str(refused.value) == (
        "registry.test:5000: TLS certificate not trusted (unable to get local issuer certificate); "
        "set ca_file for this registry to the CA that signed it"
    )


def test_nothing_listening() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = RegistryClient(f"127.0.0.1:{port}")
    assert client.base_url == f"https://127.0.0.1:{port}"
    with pytest.raises(RegistryError) as refused:
        client.resolve("ml/tf", "1")
    assert str(refused.value) == (
        f"127.0.0.1:{port}: cannot connect ([Errno 111] Connection refused)"
    )


def test_requests_time_out_after_20_seconds(scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    # A registry that never answers must not hang `tfenv lock`.
    server, ca = scripted
    server.script = lambda method, path, headers: manifest()
    timeouts = []
    urlopen = urllib.request.urlopen

    def spy(*args: Any, **kwargs: Any) -> Any:
        timeouts.append(kwargs.get("timeout"))
        return urlopen(*args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", spy)
    robot(server, ca).resolve("ml/tf", "1")
    assert timeouts == [20]


def test_the_base_url() -> None:
    assert RegistryClient("registry.test:5000").base_url == "https://registry.test:5000"
    # Only slashes are dropped from an endpoint's end.
    assert RegistryClient("r", endpoint="https://MIRROR.BOX//").base_url == "https://MIRROR.BOX"
