"""A small Docker registry (distribution v2 / OCI) client: what a tag's digest is.

Only what the lock needs: ``HEAD /v2/NAME/manifests/TAG`` with the manifest
media types as ``Accept``, ``Docker-Content-Digest`` from the answer, and for
a multi-arch index the digest of one platform's manifest. Basic and bearer
token auth, a CA bundle for private registries. Passwords are
:class:`~tfenv.model.secrets.SecretValue` and never reach a message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tfenv.errors import TfenvError
from tfenv.model.secrets import SecretValue

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
TIMEOUT = 20


class RegistryError(TfenvError):
    """A registry answer we cannot use; the message says what to check."""


@dataclass(frozen=True)
class Resolved:
    digest: str  # what the tag points at: a manifest or an index
    media_type: str
    platform_digest: str | None = None  # the platform's manifest, for an index


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryClient:
    """Talks to one registry (``host[:port]``) over HTTPS."""

    def __init__(
        self,
        host: str,
        *,
        username: str | None = None,
        password: SecretValue | None = None,
        ca_file: str | Path | None = None,
        endpoint: str | None = None,
    ):
        self.host = host
        # Where this machine reaches the registry, when not at its name (a tunnel, the lab).
        self.base_url = (endpoint or f"https://{host}").rstrip("/")
        self._username = username
        self._password = password
        self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._auth: str | None = None  # Authorization header that worked last

    def _basic(self) -> str:
        if self._username is None or self._password is None:
            raise RegistryError(
                f"{self.host} asks for a login: declare registries['{self.host}'] "
                "with username and password_secret"
            )
        raw = f"{self._username}:{self._password.reveal()}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _open(self, request: urllib.request.Request):
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT, context=self._context)
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise RegistryError(
                    f"{self.host}: TLS certificate not trusted ({reason.verify_message}); "
                    "set ca_file for this registry to the CA that signed it"
                ) from None
            raise RegistryError(f"{self.host}: cannot connect ({reason})") from None

    def _token(self, params: dict[str, str], scope: str) -> str:
        if not params["realm"].startswith("https://"):
            raise RegistryError(
                f"{self.host}: its token service {params['realm']!r} is not https; "
                "tfenv does not send credentials there"
            )
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        url = params["realm"] + "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url)
        if self._username is not None and self._password is not None:
            # Unredirected: a redirect must not carry the password to another place.
            request.add_unredirected_header("Authorization", self._basic())
        try:
            with self._open(request) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as exc:
            raise RegistryError(
                f"{self.host}: token service refused ({exc.code}); check the username and "
                "password secret"
            ) from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"{self.host}: token service sent no token")
        return "Bearer " + token

    def request(self, method: str, path: str, repository: str, headers: dict[str, str]):
        """One request, logging in (basic or bearer) when the registry asks for it."""
        url = f"{self.base_url}{path}"
        for attempt in range(2):
            request = urllib.request.Request(url, method=method, headers=headers)
            if self._auth:
                request.add_unredirected_header("Authorization", self._auth)
            try:
                return self._open(request)
            except urllib.error.HTTPError as exc:
                if exc.code != 401:
                    raise
                if attempt == 1 or not exc.headers.get("WWW-Authenticate"):
                    raise RegistryError(
                        f"{self.host}: login refused for {repository}; check the username "
                        "and password secret"
                    ) from None
                scheme, params = parse_challenge(exc.headers["WWW-Authenticate"])
                if scheme == "basic":
                    self._auth = self._basic()
                elif scheme == "bearer" and "realm" in params:
                    self._auth = self._token(params, f"repository:{repository}:pull")
                else:
                    raise RegistryError(
                        f"{self.host}: unsupported auth scheme {scheme!r}"
                    ) from None
        raise AssertionError("unreachable")

    def check(self) -> None:
        """The registry answers the v2 API and accepts our login."""
        self.request("GET", "/v2/", "", {}).close()

    def resolve(self, repository: str, tag: str, platform: str = "linux/amd64") -> Resolved:
        """The digest ``repository:tag`` points at (and ``platform``'s, for an index)."""
        path = f"/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
        try:
            with self.request("HEAD", path, repository, {"Accept": ACCEPT}) as answer:
                digest = answer.headers.get("Docker-Content-Digest")
                media_type = answer.headers.get("Content-Type", "").split(";")[0]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise RegistryError(f"{self.host}/{repository}:{tag}: no such tag") from None
            raise RegistryError(f"{self.host}/{repository}:{tag}: HTTP {exc.code}") from None
        if digest is None or media_type in INDEX_TYPES:
            body, media_type = self._get_manifest(repository, tag)
            digest = digest or "sha256:" + hashlib.sha256(body).hexdigest()
            if media_type in INDEX_TYPES:
                return Resolved(digest, media_type, _platform_digest(body, platform, tag))
        return Resolved(digest, media_type)

    def _get_manifest(self, repository: str, tag: str) -> tuple[bytes, str]:
        path = f"/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
        with self.request("GET", path, repository, {"Accept": ACCEPT}) as answer:
            return answer.read(), answer.headers.get("Content-Type", "").split(";")[0]


def _platform_digest(body: bytes, platform: str, tag: str) -> str:
    os_name, _, arch = platform.partition("/")
    for entry in json.loads(body).get("manifests", []):
        wanted = entry.get("platform", {})
        if wanted.get("os") == os_name and wanted.get("architecture") == arch:
            return entry["digest"]
    raise RegistryError(f"{tag}: the image index has no {platform} manifest")
