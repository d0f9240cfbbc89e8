"""Bring the lab fleet up, report on it, and take it down.

Every container and network the lab makes carries the label
``tfenv.lab.name=<name>``; ``down`` removes exactly those (with their
anonymous volumes) and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tfenv.images.registry import RegistryError
from tfenv.lab.engine import docker_ready, ensure_command, ensure_docker
from tfenv.lab.images import ensure_host_image
from tfenv.lab.progress import say, step
from tfenv.lab.registry import LabRegistry, ensure_registry
from tfenv.lab.run import LabError, run, ssh_keygen
from tfenv.lab.service import Found, free_port, published_port
from tfenv.lab.sim import nfs as nfs_sim
from tfenv.lab.sim import nvidia as nvidia_sim
from tfenv.lab.sim.nvidia import BUS_IDS
from tfenv.model.secrets import SecretRef, generate_secret_file

LAB_USER = "tfenv"
LAB_SECRETS = ("jupyter_token_dev",)  # random tokens of the lab's own dev containers
# What a host-like container needs here: --privileged fails on these machines
# (no CAP_SYS_RESOURCE), so everything else it implies is granted one by one.
HOST_RUN_FLAGS = (
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--device-cgroup-rule",
    "a *:* rwm",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    # `reboot` on a lab host stops its container; Docker starts it again, as a
    # machine comes back (pyinfra's server.reboot waits for it).
    "--restart",
    "unless-stopped",
    # FUSE for the lab's simulated NFS client (sshfs).
    "--device",
    "/dev/fuse",
    # The deploy's dockerd gets a real volume (overlay2), not the slow vfs fallback.
    "-v",
    "/var/lib/docker",
)


@dataclass
class LabHost:
    name: str
    container: str
    port: int


@dataclass
class LabState:
    name: str
    user: str
    key: str
    known_hosts: str
    network: str
    hosts: list[LabHost] = field(default_factory=list)
    # The lab registry, as the lab's data declares it (see group_data/lab.py).
    registry: dict[str, str | int] = field(default_factory=dict)
    lock: str | None = None  # the lab's image lock, when lab images were pushed
    gpus_per_host: int = 0  # SIMULATED GPUs per host
    apt_repositories: dict[str, dict[str, str]] = field(default_factory=dict)  # SIMULATED
    nfs_server: str = ""  # SIMULATED
    # Tokens the lab generates for its own dev containers (name -> file, 0600).
    secrets: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> LabState:
        data = json.loads(path.read_text())
        hosts = [LabHost(**h) for h in data.pop("hosts")]
        return cls(**data, hosts=hosts)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    def ssh_data(self, name: str) -> dict[str, str | int | bool]:
        """How pyinfra reaches lab host ``name``: over SSH on 127.0.0.1, strict host
        keys against the lab's own known_hosts, the non-root deploy user with sudo
        (the host data every lab inventory starts from)."""
        host = next((h for h in self.hosts if h.name == name), None)
        if host is None:
            raise LabError(f"the lab has no host {name!r} (it has {len(self.hosts)})")
        return {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": host.port,
            "ssh_user": self.user,
            "ssh_key": self.key,
            "ssh_known_hosts_file": self.known_hosts,
            "ssh_strict_host_key_checking": "yes",
            "_sudo": True,
        }


def current_state(required: bool = True) -> LabState | None:
    """The running lab's state, for the lab inventory (``required``) and its data file
    (pyinfra reads every group_data file, for any inventory: there it is optional)."""
    state_file = Path(os.environ.get("TFENV_LAB_DIR", ".lab")) / "state.json"
    if not state_file.exists():
        if not required:
            return None
        raise LabError(f"{state_file} not found: the lab is not up. Run: tfenv lab up")
    return LabState.read(state_file)


@dataclass(frozen=True)
class Lab:
    """One lab: its name (prefix of everything it creates) and its state directory."""

    name: str = "tfenv-lab"
    directory: Path = Path(".lab")

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def lock(self) -> Path:
        return self.directory / "images.lock.yaml"

    @property
    def registry_container(self) -> str:
        return f"{self.name}-registry"

    @property
    def label(self) -> str:
        return f"tfenv.lab.name={self.name}"

    def host_name(self, index: int) -> str:
        return f"lab-{index}"

    def container_name(self, index: int) -> str:
        return f"{self.name}-{index}"


@dataclass(frozen=True)
class _Existing:
    """What one ``docker ps`` line tells about a lab container."""

    state: str
    image: str
    owner: str  # the lab directory whose keys it uses (label tfenv.lab.dir)
    role: str  # a service ("registry", "nvidia-apt", "nfs"), or "" for a host
    spec: str  # a host's options hash (label tfenv.lab.spec)


def _containers(lab: Lab) -> dict[str, _Existing]:
    """This lab's containers, in any state: one ``docker ps`` for the whole fleet."""
    fmt = (
        '{{.Names}}\t{{.State}}\t{{.Image}}\t{{.Label "tfenv.lab.dir"}}'
        '\t{{.Label "tfenv.lab.role"}}\t{{.Label "tfenv.lab.spec"}}'
    )
    out = run(["docker", "ps", "-a", "--filter", f"label={lab.label}", "--format", fmt]).stdout
    rows = (line.split("\t") for line in out.splitlines() if line)
    return {row[0]: _Existing(*row[1:]) for row in rows}


def _ensure_network(lab: Lab) -> None:
    existing = run(["docker", "network", "ls", "-q", "--filter", f"name=^{lab.name}$"]).stdout
    if not existing.strip():
        run(["docker", "network", "create", "--label", lab.label, lab.name])


def _check_owner(lab: Lab, existing: dict[str, _Existing]) -> None:
    """Two checkouts must not share one lab: its keys live in one directory."""
    mine = str(lab.directory.resolve())
    for found in existing.values():
        if found.owner != mine:
            raise LabError(
                f"a lab named {lab.name!r} already runs with its keys in {found.owner}, not "
                f"{mine}. Take it down from there (tfenv lab down --dir {found.owner}) or pick "
                "another name (tfenv lab up --name NAME)."
            )


def _check_running(name: str, container: str) -> None:
    state = run(
        ["docker", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container]
    ).stdout.split()
    if state[0] != "running":
        logs = run(["docker", "logs", "--tail", "20", container], check=False)
        raise LabError(
            f"{name}: its container stopped right after starting ({state[0]}, exit {state[1]}). "
            f"Log tail:\n{logs.stdout}{logs.stderr}\nIf the log is empty, systemd could not "
            f"start: check fs.inotify.max_user_instances and free memory, then run tfenv lab up."
        )


def ssh_command(key: str, known_hosts: str, port: int, user: str = LAB_USER) -> list[str]:
    """``ssh`` argv for a lab host: key only, strict host key checking, no prompts."""
    return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=5",
            "-i", key, "-p", str(port), f"{user}@127.0.0.1"]  # fmt: skip


def _ssh_base(lab: Lab, port: int) -> list[str]:
    return ssh_command(str(lab.key.resolve()), str(lab.known_hosts.resolve()), port)


def wait_for_ssh(lab: Lab, host: LabHost, timeout: float = 90) -> None:
    # Docker's port forwarder accepts TCP before sshd listens: only a real
    # command over SSH proves the host is up.
    deadline = time.monotonic() + timeout
    while True:
        result = run([*_ssh_base(lab, host.port), "true"], check=False, timeout=15)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = run(["docker", "logs", "--tail", "20", host.container], check=False)
            raise LabError(
                f"{host.name}: no SSH on 127.0.0.1:{host.port} after {timeout:.0f}s "
                f"({result.stderr.strip()}). Container log tail:\n"
                f"{logs.stdout}{logs.stderr}\nTry: tfenv lab down && tfenv lab up"
            )
        time.sleep(0.5)


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INSTANCES_PER_HOST = 8  # systemd, journald, logind, dbus... each holds inotify instances


def _ensure_inotify(hosts: int) -> None:
    """systemd in each host takes inotify instances; Linux's default of 128 stops
    the 26th host dead (exit 255, no log). Raise the limit when we may."""
    try:
        current = int(INOTIFY_INSTANCES.read_text())
    except OSError:
        return
    wanted = max(1024, hosts * INSTANCES_PER_HOST + 256)
    if current >= wanted:
        return
    if os.geteuid() != 0:
        say(
            f"    warning: fs.inotify.max_user_instances is {current}; lab hosts beyond about "
            f"{current // INSTANCES_PER_HOST} may fail to boot. Raise it: "
            f"sudo sysctl fs.inotify.max_user_instances={wanted}"
        )
        return
    say(
        f"    raising fs.inotify.max_user_instances {current} -> {wanted} "
        "(systemd in each lab host needs inotify instances)"
    )
    INOTIFY_INSTANCES.write_text(f"{wanted}\n")


def _host_port(previous: int | None) -> int:
    """The port a new host container publishes SSH on: its previous one when still
    free (ssh commands and known_hosts stay valid), else any free port."""
    return free_port(previous)


def _host_spec(image: str, gpus: int, host_dir: Path, nfs_client: Path) -> tuple[str, list[str]]:
    """A lab host's ``docker run`` options and a hash of them (label tfenv.lab.spec)."""
    options = [
        *HOST_RUN_FLAGS,
        "-v", f"{host_dir.resolve()}:/etc/ssh/lab:ro",
        # SIMULATORS: the host's GPUs and the NFS client's key (tfenv/lab/sim).
        "-v", f"{(host_dir / 'nvidia-sim').resolve()}:/etc/nvidia-sim:ro",
        "-v", f"{nfs_client.resolve()}:/etc/lab-nfs:ro",
    ]  # fmt: skip
    digest = hashlib.sha256(repr((image, gpus, options)).encode()).hexdigest()[:12]
    return digest, options


def up(lab: Lab, hosts: int = 3, images: bool = True, gpus: int = 2,
       dev_image: str = "tf") -> LabState:  # fmt: skip
    """Reconcile the lab to ``hosts`` running hosts reachable over SSH, each
    simulating ``gpus`` GPUs; its registry, simulated NVIDIA apt repositories
    and NFS server; and (with ``images``) the lab's dev images (idempotent):
    ``dev_image`` "tf", the TF releases; "small", the scale lab's small image."""
    if hosts < 1:
        raise LabError("--hosts must be at least 1")
    if not 0 <= gpus <= len(BUS_IDS):
        raise LabError(f"--gpus must be between 0 and {len(BUS_IDS)}")
    started = time.monotonic()
    ensure_docker()
    # The lab's own keys and its SSH checks: OpenSSH's client tools.
    ensure_command("ssh-keygen", "openssh-client", "OpenSSH's client tools")
    image = ensure_host_image()
    lab.directory.mkdir(parents=True, exist_ok=True)
    os.chmod(lab.directory, 0o700)
    ssh_keygen(lab.key, f"{lab.name}-deploy")
    _ensure_network(lab)
    _ensure_inotify(hosts)

    existing = _containers(lab)
    _check_owner(lab, existing)
    services = {name: found for name, found in existing.items() if found.role}
    existing = {name: found for name, found in existing.items() if not found.role}
    common = {"lab_name": lab.name, "label": lab.label, "network": lab.name,
              "lab_dir": lab.directory}  # fmt: skip

    def found(container: str) -> Found | None:
        service = services.get(container)
        return Found(service.state, service.image) if service else None

    registry = ensure_registry(**common, found=found(f"{lab.name}-registry"))
    apt_repositories = nvidia_sim.ensure_repositories(
        **common, found=found(f"{lab.name}-nvidia-apt")
    )
    nfs_sim.ensure_server(**common, found=found(f"{lab.name}-nfs"))

    wanted = {lab.container_name(i) for i in range(1, hosts + 1)}
    extra = sorted(set(existing) - wanted)
    if extra:
        with step(f"Removing {len(extra)} host(s) beyond --hosts {hosts}"):
            run(["docker", "rm", "-f", "-v", *extra])

    previous_ports = (
        {host.name: host.port for host in LabState.read(lab.state_file).hosts}
        if lab.state_file.exists()
        else {}
    )
    state = LabState(
        lab.name, LAB_USER, str(lab.key.resolve()), str(lab.known_hosts.resolve()), lab.name
    )
    state.gpus_per_host = gpus
    state.apt_repositories = apt_repositories
    state.nfs_server = nfs_sim.ALIAS
    for secret in LAB_SECRETS:
        ref = SecretRef(file=str((lab.directory / "secrets" / secret).resolve()), generate=True)
        generate_secret_file(ref, lab.directory)
        state.secrets[secret] = ref.file
    state.registry = {
        "host": registry.host,
        "local": registry.local,
        "container": registry.container,
        "username": registry.username,
        "password_file": str(registry.password_file.resolve()),
        "ca_file": str(registry.ca_file.resolve()),
    }
    created = 0
    for index in range(1, hosts + 1):
        name, container = lab.host_name(index), lab.container_name(index)
        host_dir = lab.directory / "hosts" / name
        host_dir.mkdir(parents=True, exist_ok=True)
        # Host keys are made once and injected, so strict checking survives re-creation.
        ssh_keygen(host_dir / "ssh_host_ed25519_key", f"{name}-host")
        shutil.copyfile(f"{lab.key}.pub", host_dir / "authorized_keys")
        os.chmod(host_dir / "authorized_keys", 0o644)
        nvidia_sim.write_gpus(host_dir / "nvidia-sim", name, gpus)
        spec, options = _host_spec(image, gpus, host_dir, nfs_sim.client_dir(lab.directory))
        host = existing.get(container)
        status = host.state if host else None
        if host is not None and host.spec != spec:
            say(f"    {name}: its image or options changed; re-creating")
            run(["docker", "rm", "-f", "-v", container])
            status = None
        if status is None:
            say(f"==> Starting {name} ({index}/{hosts})")
            run(
                [
                    "docker", "run", "-d", "--name", container, "--hostname", name,
                    "--label", lab.label, "--label", f"tfenv.lab.host={name}",
                    "--label", f"tfenv.lab.dir={lab.directory.resolve()}",
                    "--label", f"tfenv.lab.spec={spec}",
                    "--network", lab.name, "--network-alias", name,
                    *options,
                    "-p", f"127.0.0.1:{_host_port(previous_ports.get(name))}:22",
                    image,
                ]
            )  # fmt: skip
            created += 1
        elif status != "running":
            say(f"==> Starting stopped {name} ({index}/{hosts})")
            run(["docker", "start", container])
        _check_running(name, container)
        state.hosts.append(LabHost(name, container, published_port(container, 22)))

    lines = []
    for host in state.hosts:
        public = (lab.directory / "hosts" / host.name / "ssh_host_ed25519_key.pub").read_text()
        key_type, key_data = public.split()[:2]
        lines.append(f"[127.0.0.1]:{host.port} {key_type} {key_data}\n")
    lab.known_hosts.write_text("".join(lines))
    if images:
        from tfenv.lab.tf_images import push_all, write_lab_lock

        locked = push_all(registry, lab.directory, dev_image)
        write_lab_lock(lab.lock, locked)
        state.lock = str(lab.lock.resolve())
        say(f"    lab image lock: {lab.lock}")
    elif lab.lock.exists():
        state.lock = str(lab.lock.resolve())
    state.write(lab.state_file)

    with step(f"Waiting for SSH on {hosts} host(s)"):
        for number, host in enumerate(state.hosts, 1):
            wait_for_ssh(lab, host)
            if hosts > 5 and number % 5 == 0:
                say(f"    {number}/{hosts} answer")
    say(
        f"Lab {lab.name!r}: {hosts} host(s) up ({created} created) in "
        f"{time.monotonic() - started:.1f}s. Inventory: inventories/lab.py"
    )
    return state


def memory_bytes(container: str) -> int | None:
    """Resident memory of a container (``docker stats`` shows 0 B here)."""
    cid = run(["docker", "inspect", "--format", "{{.Id}}", container]).stdout.strip()
    for stat in (
        Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.stat"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.stat"),
    ):
        if stat.exists():
            values = dict(line.split() for line in stat.read_text().splitlines())
            for key in ("total_rss", "anon"):
                if key in values:
                    return int(values[key])
    return None


def status(lab: Lab) -> list[dict]:
    """One row per lab host: name, container state, port, SSH answer, memory."""
    if not lab.state_file.exists():
        return []
    state = LabState.read(lab.state_file)
    containers = _containers(lab)
    rows = []
    for host in state.hosts:
        found = containers.get(host.container)
        running = found is not None and found.state == "running"
        ssh_ok = (
            running
            and run(
                [*_ssh_base(lab, host.port), "sudo", "true"], check=False, timeout=15
            ).returncode
            == 0
        )
        rows.append(
            {
                "host": host.name,
                "container": host.container,
                "state": found.state if found else "missing",
                "port": host.port,
                "kind": "ssh",
                "answers": ssh_ok,
                "memory": memory_bytes(host.container) if running else None,
            }
        )
    if state.registry:
        found = containers.get(lab.registry_container)
        running = found is not None and found.state == "running"
        registry = LabRegistry(
            lab.registry_container,
            int(str(state.registry["local"]).rsplit(":", 1)[1]),
            lab.directory / "registry",
        )
        try:
            answers = running and registry.client().check() is None
        except RegistryError:
            answers = False
        rows.append(
            {
                "host": "registry",
                "container": lab.registry_container,
                "state": found.state if found else "missing",
                "port": registry.port,
                "kind": "https+auth",
                "answers": answers,
                "memory": memory_bytes(lab.registry_container) if running else None,
            }
        )
    return rows


def down(lab: Lab) -> None:
    """Remove the lab's containers (with their volumes), network and state."""
    if not docker_ready():
        say("No Docker engine answers: nothing of the lab can be running.")
    else:
        containers = list(_containers(lab))
        if containers:
            with step(f"Removing {len(containers)} lab container(s) and their volumes"):
                run(["docker", "rm", "-f", "-v", *containers])
        networks = run(
            ["docker", "network", "ls", "-q", "--filter", f"label={lab.label}"]
        ).stdout.split()
        if networks:
            run(["docker", "network", "rm", *networks])
    for path in (lab.state_file, lab.known_hosts, lab.lock):
        path.unlink(missing_ok=True)
    say(
        f"Lab {lab.name!r} is down. Keys and host keys stay in {lab.directory}/ "
        "so a new lab keeps them; images stay cached."
    )
