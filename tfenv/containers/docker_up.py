"""Wait for the Docker daemon before using it: dockerd may be restarting.

Facts are read before anything runs; by the time a container command runs,
something (an upgrade, an operator, the engine operation of this very run)
may be restarting dockerd. A command that waits a little for the daemon
turns that into a short pause instead of a failed host.
"""

from __future__ import annotations

DOCKER_UP_SECONDS = 60

# What the docker client says when no daemon listens on its socket.
NO_DAEMON = "Cannot connect to the Docker daemon"


def docker_down_message() -> str:
    """What to tell the user when Docker did not come back within the wait."""
    return (
        f"Docker does not answer on this host (waited {DOCKER_UP_SECONDS} s); nothing more "
        "was changed. Check it (systemctl status docker), then run again."
    )


def wait_for_docker(fail: bool = True) -> str:
    """Shell that waits up to DOCKER_UP_SECONDS for ``docker info`` to answer; then
    (``fail``) says so on stderr and exits 1, or goes on (the next command reports)."""
    give_up = f"{{ echo 'tfenv: {docker_down_message()}' >&2; exit 1; }}" if fail else "break"
    return (
        "tfenv_i=0; until docker info >/dev/null 2>&1; do tfenv_i=$((tfenv_i+1)); "
        f'[ "$tfenv_i" -lt {DOCKER_UP_SECONDS} ] || {give_up}; sleep 1; done'
    )
