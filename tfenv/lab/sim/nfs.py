"""SIMULATED NFS server for the lab: shared storage every lab host mounts.

The machine's kernel has no NFS, so ``nfs.lab.test`` is an sshd container
whose ``/export`` (kept in ``.lab/nfs/exports``, like a real export it
outlives every client) lab hosts mount over sshfs: their ``/sbin/mount.nfs``
is the lab's helper (``files/mount.nfs``), so the deploy's systemd mount
unit of ``Type=nfs`` runs unchanged. Host keys are checked strictly both ways.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tfenv.lab.images import build_image
from tfenv.lab.run import ssh_keygen
from tfenv.lab.service import Found, ensure_service

ALIAS = "nfs.lab.test"
EXPORTS = ("/export/checkpoints",)
DOCKERFILE = """\
# SIMULATED NFS server (tfenv lab): sftp over sshd, root by key only. A whole
# scale lab mounts at once: sshd's default MaxStartups (10) would drop some.
FROM tfenv-lab/base:bookworm
RUN rm -f /etc/ssh/ssh_host_* \\
 && printf '%s\\n' \\
    'HostKey /etc/lab-nfs/ssh_host_ed25519_key' \\
    'AuthorizedKeysFile /etc/lab-nfs/authorized_keys' \\
    'PermitRootLogin prohibit-password' \\
    'PasswordAuthentication no' \\
    'KbdInteractiveAuthentication no' \\
    'UseDNS no' \\
    'MaxStartups 200' \\
    > /etc/ssh/sshd_config.d/lab-nfs.conf
EXPOSE 22
CMD ["/bin/sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e"]
"""


def client_dir(lab_dir: Path) -> Path:
    """What lab hosts mount read-only at /etc/lab-nfs: client key and known_hosts."""
    return lab_dir / "nfs" / "client"


def ensure_server(
    *, lab_name: str, label: str, network: str, lab_dir: Path, found: Found | None
) -> None:
    base = lab_dir / "nfs"
    server, client = base / "server", client_dir(lab_dir)
    for directory in (server, client):
        directory.mkdir(parents=True, exist_ok=True)
    ssh_keygen(server / "ssh_host_ed25519_key", f"{ALIAS}-host")
    ssh_keygen(client / "id_ed25519", f"{lab_name}-nfs-client")
    shutil.copyfile(client / "id_ed25519.pub", server / "authorized_keys")
    key_type, key_data = (server / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    (client / "known_hosts").write_text(f"{ALIAS} {key_type} {key_data}\n")
    for export in EXPORTS:
        (base / "exports" / export.removeprefix("/export/")).mkdir(parents=True, exist_ok=True)
    ensure_service(
        container=f"{lab_name}-nfs",
        role="nfs",
        alias=ALIAS,
        image=build_image("tfenv-lab/nfs-sim", DOCKERFILE, what="the SIMULATED NFS server"),
        found=found,
        lab_label=label,
        lab_dir=lab_dir,
        network=network,
        run_args=[
            "-v",
            f"{server.resolve()}:/etc/lab-nfs:ro",
            "-v",
            f"{(base / 'exports').resolve()}:/export",
        ],
        what=f"the SIMULATED NFS server ({ALIAS}:/export)",
    )
