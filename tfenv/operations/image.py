"""Images pulled by digest only, through tfenv's registry logins."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from tfenv.containers.docker_up import wait_for_docker
from tfenv.drift import record
from tfenv.facts.tf_node import TfNodeState, tf_node
from tfenv.images.reference import DIGEST_RE
from tfenv.operations.registry_login import DOCKER_CONFIG_DIR


def pull_command(pinned: str) -> StringCommand:
    """Pull ``name@sha256:...`` and prove the local image carries that digest.

    On failure Docker's own error is shown, then what to do: a full disk and
    an unreachable registry need different fixes. Waits for dockerd first
    (it may be restarting)."""
    ref = QuoteString(pinned)
    full = QuoteString(
        f"tfenv: could not pull {pinned}: the host's disk is full (no space left on device). "
        "Free space where Docker keeps images (df -h /var/lib/docker; docker image prune), "
        "then run again. Running containers were left as they are."
    )
    other = QuoteString(
        f"tfenv: could not pull {pinned}: is the registry up, and is its login in "
        "'registries' right? Running containers were left as they are."
    )
    return StringCommand(
        wait_for_docker(), ";",
        "tfenv_err=$(docker", "--config", DOCKER_CONFIG_DIR, "pull", "-q", ref,
        "2>&1", ">/dev/null)",
        "&&", "docker", "image", "inspect", "--format",
        "'{{range .RepoDigests}}{{println .}}{{end}}'", ref, "|", "grep", "-qxF", ref,
        "||", "{", "printf", "'%s\\n'", '"$tfenv_err"', ">&2;",
        'case "$tfenv_err" in', "*'no space left'*)", "echo", full, ">&2;;",
        "*)", "echo", other, ">&2;;", "esac;", "exit", "1;", "}",
    )  # fmt: skip


@operation()
def pinned_image(image: str, observed: TfNodeState | None = None):
    """
    Have the image ``name@sha256:...`` on the host, pulled by digest.

    + image: a pinned reference (from the lock: ``LockedImage.pinned``)
    + observed: the host's :class:`~tfenv.facts.tf_node.TfNodeState`, if already read

    A pull by digest makes Docker verify every byte against it; tfenv then
    checks the local image carries that digest. Tags are never pulled.

    **Example:**

    .. code:: python

        pinned_image(name="Pull TF 2.17", image="registry.example/ml/tf@sha256:...")
    """
    name, _, digest = image.partition("@")
    if not name or not DIGEST_RE.fullmatch(digest):
        raise OperationError(f"image {image!r}: expected NAME@sha256:<64 hex> (from the lock)")
    state = observed or tf_node(host)
    if state.has_image(image):
        host.noop(f"{image} is present")
        return
    record("images", image, "present", "absent")
    yield pull_command(image)
