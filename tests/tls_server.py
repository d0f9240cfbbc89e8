"""An HTTP server of a test's own, served over TLS from a thread, with a
certificate from a test CA (tfenv's lab CA helpers): registry stand-ins."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

from tfenv.lab.ca import ensure_ca, issue_server_cert


@contextlib.contextmanager
def tls_server(server: ThreadingHTTPServer, directory: Path) -> Iterator[Path]:
    """Serve ``server`` (bound on 127.0.0.1) over TLS until the block ends; its
    certificate is issued by a CA made in ``directory``. Yields the CA's certificate."""
    ca = ensure_ca(directory / "ca", "test")
    issue_server_cert(ca, ["127.0.0.1"], directory / "server.crt", directory / "server.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.crt", directory / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ca.cert
    finally:
        server.shutdown()
        server.server_close()
