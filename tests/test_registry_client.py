"""The registry client against a token-auth registry stand-in on 127.0.0.1 (TLS, bearer).

The lab registry (tests/test_lab_registry.py) covers basic auth with real
docker-registry; this covers the bearer-token flow public registries use,
and a multi-arch index, which the lab's registry does not serve.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tfenv.images.registry import INDEX_TYPES, RegistryClient, RegistryError
from tfenv.lab.ca import ensure_ca, issue_server_cert
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
    directory = tmp_path_factory.mktemp("registry")
    ca = ensure_ca(directory / "ca", "test")
    issue_server_cert(ca, ["127.0.0.1"], directory / "server.crt", directory / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.crt", directory / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}", ca.cert
    server.shutdown()


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
