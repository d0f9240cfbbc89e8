# A lab host: Debian 12 with systemd as PID 1 and sshd, like a bare server.
# Docker is deliberately NOT installed: the deploy installs it, as on a real host.
FROM tfenv-lab/base:bookworm

# The deploy user: non-root, passwordless sudo (as cloud images ship it).
RUN useradd --create-home --shell /bin/bash --uid 1000 tfenv \
 && echo 'tfenv ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/tfenv \
 && chmod 0440 /etc/sudoers.d/tfenv \
 && passwd --lock tfenv

# sshd: keys only, no root. The host key and authorized_keys are injected at
# run time from .lab/hosts/<name>/ so they survive re-creating the container.
RUN rm -f /etc/ssh/ssh_host_* \
 && printf '%s\n' \
    'HostKey /etc/ssh/lab/ssh_host_ed25519_key' \
    'AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/lab/authorized_keys' \
    'PasswordAuthentication no' \
    'KbdInteractiveAuthentication no' \
    'PermitRootLogin no' \
    'UseDNS no' \
    > /etc/ssh/sshd_config.d/tfenv-lab.conf

# Units that make no sense in a container (no consoles, no udev, no kernel clock).
RUN systemctl mask getty.target console-getty.service systemd-udevd.service \
      systemd-udev-trigger.service systemd-timesyncd.service systemd-logind.service \
      systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount \
      apt-daily.timer apt-daily-upgrade.timer 2>/dev/null; \
    systemctl enable ssh.service

# SIMULATORS for what this machine's kernel lacks (see tfenv/lab/sim): an
# NFS client over sshfs (FUSE) behind the usual /sbin/mount.nfs name, with the
# real one from nfs-common diverted if a deploy installs it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends sshfs \
 && rm -rf /var/lib/apt/lists/* \
 && for helper in mount.nfs mount.nfs4; do \
      dpkg-divert --local --rename --divert /sbin/$helper.distrib --add /sbin/$helper; \
    done
COPY mount.nfs /sbin/mount.nfs
RUN ln -sf mount.nfs /sbin/mount.nfs4

ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
