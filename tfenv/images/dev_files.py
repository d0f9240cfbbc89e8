"""The dev container's own files: its entrypoint (key-only sshd as the container's
non-root user, Jupyter with a token file), sshd's config and Jupyter's config.

They are part of every image tfenv runs as a dev container: ``tfenv image
build`` copies them into team images, and the lab's TF images carry the same.
"""

from __future__ import annotations

from importlib import resources

ENTRYPOINT = "/usr/local/bin/tfenv-dev-entrypoint"
# Where each file goes in an image, and its mode.
DEV_FILES = {
    "tfenv-dev-entrypoint": (ENTRYPOINT, 0o755),
    "tfenv-sshd_config": ("/etc/ssh/tfenv-sshd_config", 0o644),
    "jupyter_server_config.py": ("/etc/jupyter/jupyter_server_config.py", 0o644),
}


def dev_file(name: str) -> str:
    """The text of one of :data:`DEV_FILES`."""
    if name not in DEV_FILES:
        raise KeyError(name)
    return resources.files("tfenv.images").joinpath(f"files/{name}").read_text()
