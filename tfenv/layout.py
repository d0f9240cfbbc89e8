"""Every path, suffix, marker and label tfenv owns on a host, in one place.

Facts (which read them) and operations (which write them) both import this
module; neither owns what the other reads.
"""

from __future__ import annotations

# -- /etc/tfenv: configuration and secrets, root-owned -------------------------
TFENV_ETC = "/etc/tfenv"
SECRETS_DIR = f"{TFENV_ETC}/secrets"  # SECRETS_DIR/CONTAINER/SECRET, 0400, the container user
CONTAINERS_DIR = f"{TFENV_ETC}/containers"  # authorized_keys, passwd, group per container
DOCKER_CONFIG_DIR = f"{TFENV_ETC}/docker"  # registry logins (docker --config)
SEAL_SUFFIX = ".tfenv-seal"  # beside every file tfenv wrote a secret or key to

# -- /var/lib/tfenv: state that outlives every container ----------------------
STATE_DIR = "/var/lib/tfenv/containers"  # STATE_DIR/CONTAINER/{home,ssh-host-keys}
ROLLOUT_LOCK_DIR = "/var/lib/tfenv/rollouts"  # one rollout per container group: see rollout_lock
# The host's own record of a driver rollout that moved it (JSON: id, from, to): the
# plain deploy keeps the rollout's version while it runs; status/resume read it.
DRIVER_ROLLOUT_FILE = f"{ROLLOUT_LOCK_DIR}/driver.json"
DRIVER_GROUP = "_nvidia-driver"  # a driver rollout's group (never a container's name)
NFS_HOMES = ".tfenv-homes"  # MOUNT_POINT/.tfenv-homes/CONTAINER: homes on an NFS export

# -- systemd ----------------------------------------------------------------
UNIT_MARKER = "# Managed by tfenv"  # first line of every mount unit tfenv wrote

# -- Docker -----------------------------------------------------------------
MANAGED_LABEL = "tfenv.managed"  # tfenv never touches a container without it
CONTAINER_LABEL = "tfenv.container"
ENV_NAMES_LABEL = "tfenv.env-names"  # the variables tfenv set: a removed one is drift too
LABEL_NAMES_LABEL = "tfenv.label-names"
SECRETS_LABEL = "tfenv.secrets"  # digest of the secrets' seals: a changed value restarts
SSH_PORT_LABEL = "tfenv.ssh-port"  # sshd's port inside: the busy check counts its sessions
# A rollout's container carries these (tfenv rollout): the hosts' own record of
# which rollout moved them, from which digest, to which one.
ROLLOUT_ID_LABEL = "tfenv.rollout.id"
ROLLOUT_FROM_LABEL = "tfenv.rollout.from"  # the previous image, name@sha256:...
ROLLOUT_TO_LABEL = "tfenv.rollout.to"  # the image the rollout put there, name@sha256:...
ROLLOUT_LABELS = (ROLLOUT_ID_LABEL, ROLLOUT_FROM_LABEL, ROLLOUT_TO_LABEL)
# tfenv hotfix's sibling container NAME-hotfix (see tfenv.deploys.hotfix)
HOTFIX_SUFFIX = "-hotfix"
HOTFIX_OF_LABEL = "tfenv.hotfix.of"  # the container it is a hotfix of
HOTFIX_BRANCH_LABEL = "tfenv.hotfix.branch"
HOTFIX_WORKTREE_LABEL = "tfenv.hotfix.worktree"
HOTFIX_REPO_LABEL = "tfenv.hotfix.repo"  # relative to the home
HOTFIX_PORTS_LABEL = "tfenv.hotfix.ports"  # the host ports it got: kept when run again
PREVIOUS_SUFFIX = ".tfenv-previous"  # the old container, kept stopped until the new one runs
LOCK_DIR = "/run/lock"  # LOCK_DIR/tfenv-container-NAME.lock: one replacement at a time

# -- Inside a dev container ----------------------------------------------------
AUTHORIZED_KEYS_TARGET = "/etc/tfenv/authorized_keys"
HOST_KEYS_TARGET = "/etc/tfenv/ssh-host-keys"
SECRETS_TARGET = "/run/secrets"


def secret_path(container: str, secret: str) -> str:
    return f"{SECRETS_DIR}/{container}/{secret}"


def container_file(container: str, name: str) -> str:
    """``authorized_keys``, ``passwd`` or ``group`` of ``container`` on the host."""
    return f"{CONTAINERS_DIR}/{container}/{name}"


def host_keys_dir(container: str) -> str:
    return f"{STATE_DIR}/{container}/ssh-host-keys"


def local_home(container: str) -> str:
    return f"{STATE_DIR}/{container}/home"


def nfs_home(mount_point: str, container: str) -> str:
    return f"{mount_point.rstrip('/')}/{NFS_HOMES}/{container}"


def nfs_checkpoints(mount_point: str, container: str) -> str:
    return f"{mount_point.rstrip('/')}/{container}"


def container_lock(container: str) -> str:
    """Held (flock) while ``container`` is replaced: a second run waits for the first."""
    return f"{LOCK_DIR}/tfenv-container-{container}.lock"


def rollout_lock(container: str) -> str:
    """On a rollout's first canary host: which rollout of ``container`` runs (JSON:
    id, owner, started), so a second control machine refuses to start another."""
    return f"{ROLLOUT_LOCK_DIR}/{container}.lock"
