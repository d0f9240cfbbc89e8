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
# LogLevel VERBOSE logs each command's session ("Starting session: command"):
# benchmarks/fleet.py counts remote commands per host from it.
RUN rm -f /etc/ssh/ssh_host_* \
 && printf '%s\n' \
    'HostKey /etc/ssh/lab/ssh_host_ed25519_key' \
    'AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/lab/authorized_keys' \
    'PasswordAuthentication no' \
    'KbdInteractiveAuthentication no' \
    'PermitRootLogin no' \
    'UseDNS no' \
    'LogLevel VERBOSE' \
    > /etc/ssh/sshd_config.d/tfenv-lab.conf

# Units that make no sense in a container (no consoles, no udev, no kernel clock).
RUN systemctl mask getty.target console-getty.service systemd-udevd.service \
      systemd-udev-trigger.service systemd-timesyncd.service systemd-logind.service \
      systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount \
      apt-daily.timer apt-daily-upgrade.timer 2>/dev/null; \
    systemctl enable ssh.service

# SIMULATORS for what a container lacks (see tfenv/lab/sim):
# - an NFS client over sshfs (FUSE) behind the usual /sbin/mount.nfs name, with
#   the real one from nfs-common diverted if a deploy installs it;
# - a per-host /proc/uptime (lxcfs), so a reboot resets it as on a machine:
#   pyinfra's server.reboot waits for exactly that. It is bound over
#   /proc/uptime only in sshd's mount namespace (what SSH sessions see): lxcfs
#   itself reads /proc/uptime and would deadlock on its own file. / is made
#   rshared first (Docker leaves it private; systemd on a machine shares it),
#   so mounts made later, NFS included, reach SSH sessions.
RUN apt-get update \
 && apt-get install -y --no-install-recommends sshfs lxcfs \
 && rm -rf /var/lib/apt/lists/* \
 && for helper in mount.nfs mount.nfs4; do \
      dpkg-divert --local --rename --divert /sbin/$helper.distrib --add /sbin/$helper; \
    done
COPY mount.nfs /sbin/mount.nfs
RUN ln -sf mount.nfs /sbin/mount.nfs4 \
 && mkdir -p /etc/systemd/system/lxcfs.service.d /etc/systemd/system/ssh.service.d \
 && printf '%s\n' '[Unit]' 'ConditionVirtualization=' '[Service]' \
    'ExecStartPost=/bin/sh -c "for i in $(seq 100); do [ -e /var/lib/lxcfs/proc/uptime ] && exit 0; sleep 0.1; done; exit 1"' \
    > /etc/systemd/system/lxcfs.service.d/tfenv-lab.conf \
 && printf '%s\n' '[Unit]' 'Requires=lxcfs.service' 'After=lxcfs.service' '[Service]' \
    'BindReadOnlyPaths=/var/lib/lxcfs/proc/uptime:/proc/uptime' \
    > /etc/systemd/system/ssh.service.d/tfenv-lab-uptime.conf \
 && printf '%s\n' '[Unit]' 'Description=Make / a shared mount, as systemd does on a machine' \
    'DefaultDependencies=no' 'Before=lxcfs.service ssh.service local-fs.target' \
    '[Service]' 'Type=oneshot' 'ExecStart=/bin/mount --make-rshared /' \
    '[Install]' 'WantedBy=local-fs.target' \
    > /etc/systemd/system/tfenv-lab-shared-root.service \
 && systemctl enable tfenv-lab-shared-root.service

ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
