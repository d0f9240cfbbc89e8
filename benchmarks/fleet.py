"""Fleet benchmark: tfenv side by side with the one-ssh lower bound, Ansible and
plain pyinfra, on a scale lab of 1, 10 and 30 hosts.

    make bench-fleet                      # = .venv/bin/python benchmarks/fleet.py

It brings up its own lab (``tfenv-bench`` in .bench/lab: ``tfenv lab up
--hosts 30 --dev-image small``, a small dev image with a SIMULATED TensorFlow so
30 hosts fit one machine), provisions it with ``deploys/tf_node.py``, reads
the state that left on lab-1 (benchmarks/comparison/readout.py) for the two
comparison deploys to declare, installs Ansible in its own venv
(.bench/ansible-venv, pinned in benchmarks/comparison/ansible/requirements.txt).
Then, per N, in interleaved rounds (--warmup, then --rounds counted; with
--slow-after S, a case whose warm-up took longer than S seconds gets
--slow-rounds counted rounds at that N), it times:

  a) ``tfenv reconcile`` (a clean fleet: exit 0)
  b) a no-op ``pyinfra deploys/tf_node.py`` (applies; changes nothing)
  c) the lower bound: one OpenSSH ssh per host, all hosts at once, running the
     same fact scripts (c-read: GpuHost + TfNode, what a) reads; c-apply: those
     and the light health probe, what b) reads); same key and known_hosts
  d) benchmarks/comparison/ansible/tf_node_check.yml: ``ansible-playbook
     --check``, forks = N, pipelining on, facts gathered
  e) benchmarks/comparison/plain_pyinfra.py: pyinfra's built-in operations,
     applied (``-y``)

Per N it prints wall medians (min-max), ratios to c), remote commands per
host (counted from each host's sshd log in each case's first run: LogLevel
VERBOSE logs every "Starting session"), the control side's peak memory (PSS
of its whole process tree, sampled) and CPU seconds (its whole tree, reaped). It writes
benchmarks/RESULTS.md with the machine, its load, the targets and a projection
to 1,000 hosts. Prints figures; asserts none. --keep-lab leaves the lab up.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tfenv.facts.gpu import SCRIPT as GPU_SCRIPT  # noqa: E402
from tfenv.facts.tf_node import SCRIPT as NODE_SCRIPT  # noqa: E402
from tfenv.lab.fleet import Lab, LabHost, LabState, ssh_command, up  # noqa: E402
from tfenv.lab.tf_images import SMALL_DEV_REPOSITORY, SMALL_DEV_TAG  # noqa: E402
from tfenv.operations.container_health import ContainerHealth  # noqa: E402

WORK = REPO / ".bench"
LAB = Lab("tfenv-bench", WORK / "lab")
COMPARISON = REPO / "benchmarks" / "comparison"
ANSIBLE_VENV = WORK / "ansible-venv"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
CONTAINER = "dev"
METHODS = ("a", "b", "c-read", "c-apply", "d", "e")
TITLES = {
    "a": "a) tfenv reconcile",
    "b": "b) no-op pyinfra tf_node (apply)",
    "c-read": "c) one ssh/host: GpuHost+TfNode",
    "c-apply": "c) one ssh/host: + light health",
    "d": "d) Ansible --check",
    "e": "e) plain pyinfra (apply)",
}
BOUND = {"a": "c-read", "b": "c-apply", "d": "c-apply", "e": "c-apply"}

INVENTORY = '''\
"""Scale-lab hosts lab-1..lab-{count} for benchmarks/fleet.py (written by it): group
``lab`` (group_data/lab.py applies), with a dev container on the lab's small image."""
from pathlib import Path

from tfenv.lab.fleet import current_state

_state = current_state()
_registry = _state.registry["host"]
_containers = {{
    "dev": {{
        "image": f"{{_registry}}/{image}",
        "user": {{"name": "researcher", "uid": 1000, "gid": 1000}},
        "authorized_keys": [Path(_state.key + ".pub").read_text().strip()],
        "ports": [{{"container": 2222, "host": 2222}}],
        "gpus": "all",
        "checkpoints": {{"nfs": "checkpoints", "path": "/checkpoints"}},
    }},
}}
lab = [
    (name, {{
        **_state.ssh_data(name), "containers": _containers, "nvidia_driver": {driver!r},
    }})
    for name in {names!r}
]
'''


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


# --- measuring one run ---------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    rc: int
    cpu: float  # user + system seconds of the whole control-side process tree
    pss_mib: float  # peak PSS of that tree (sampled every 0.1 s)
    rss_mib: float  # peak RSS of its largest single process
    fds: int  # peak open file descriptors of the tree (sampled)
    output: str = ""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def _pss_and_fds(pids: list[int]) -> tuple[int, int]:
    pss = fds = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return pss, fds


def measured(argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> Run:
    """Run ``argv`` and measure it and everything it starts (this process is a child
    subreaper: ssh ControlPersist masters that detach come back to it, are counted,
    and are ended with the run)."""
    sampled = {"pss": 0, "fds": 0}
    with tempfile.TemporaryFile("w+") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                text=True)  # fmt: skip
        if stdin is not None:
            proc.stdin.write(stdin)  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                pids = [p for p in _tree(os.getpid()) if p != os.getpid()]
                pss, fds = _pss_and_fds(pids)
                sampled["pss"], sampled["fds"] = max(sampled["pss"], pss), max(sampled["fds"], fds)
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu, maxrss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss
        for pid in [p for p in _tree(os.getpid()) if p != os.getpid()]:  # detached helpers
            try:
                os.kill(pid, signal.SIGTERM)
                _, _, usage = os.wait4(pid, 0)
                cpu += usage.ru_utime + usage.ru_stime
                maxrss = max(maxrss, usage.ru_maxrss)
            except (ChildProcessError, ProcessLookupError):
                continue
        done.set()
        sampler.join()
        out.seek(0)
        output = out.read()
    return Run(wall, proc.returncode, cpu, sampled["pss"] / 1024, maxrss / 1024, sampled["fds"],
               output[-4000:])  # fmt: skip


# --- the lab and what runs against it ------------------------------------------------------


@dataclass
class Bench:
    state: LabState
    env: dict[str, str]
    declared: Path = field(default=WORK / "declared.json")

    def names(self, count: int) -> list[str]:
        return [h.name for h in self.state.hosts[:count]]

    def inventory(self, count: int) -> Path:
        return WORK / f"inventory-{count}.py"

    def ssh(self, name: str) -> list[str]:
        port = next(h.port for h in self.state.hosts if h.name == name)
        return ssh_command(self.state.key, self.state.known_hosts, port, self.state.user)

    def on_hosts(self, names: list[str], command: str, stdin: str | None = None) -> list[str]:
        """``command`` on each of ``names`` (OpenSSH, in parallel): their outputs."""

        def one(name: str) -> str:
            result = subprocess.run([*self.ssh(name), command], input=stdin, capture_output=True,
                                    text=True, timeout=600, check=False)  # fmt: skip
            if result.returncode != 0:
                raise SystemExit(f"{name}: {command[:60]}... failed: {result.stderr[-500:]}")
            return result.stdout

        with ThreadPoolExecutor(max(1, len(names))) as pool:
            return list(pool.map(one, names))


def lab_up(hosts: int) -> LabState:
    say(f"scale lab: {hosts} host(s), small dev image (tfenv lab up, {LAB.directory})")
    return up(LAB, hosts=hosts, images=True, dev_image="small")


def write_inventories(bench: Bench, sizes: list[int]) -> None:
    import runpy

    driver = runpy.run_path(str(REPO / "group_data" / "lab.py"))["nvidia_driver"]
    for count in sizes:
        names = bench.names(count)
        image = f"{SMALL_DEV_REPOSITORY}:{SMALL_DEV_TAG}"
        driver_here = {**driver, "reboot_max_parallel": count}
        text = INVENTORY.format(count=count, names=names, image=image, driver=driver_here)
        bench.inventory(count).write_text(text)


def provision(bench: Bench, count: int) -> None:
    """tf_node on lab-1..lab-COUNT until a run changes nothing (a first run reboots)."""
    inventory = str(bench.inventory(count))
    if _no_drift(bench, inventory):
        say(f"tfenv reconcile: no drift on any of the {count} host(s): already provisioned")
        return
    for attempt in (1, 2, 3):
        say(f"provisioning {count} host(s) with deploys/tf_node.py (run {attempt}; a first "
            "run installs Docker, the driver and the toolkit, and reboots: minutes)")  # fmt: skip
        log = WORK / f"provision-{attempt}.log"
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "pyinfra", "-y", inventory,
                                     "deploys/tf_node.py"], cwd=REPO, env=bench.env,
                                    stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
            started = time.monotonic()
            while proc.poll() is None:
                time.sleep(5)
                if int(time.monotonic() - started) % 60 < 5:
                    ops = log.read_text(errors="replace").count("--> Starting operation")
                    say(f"    ... {time.monotonic() - started:.0f} s, {ops} operation(s) "
                        f"started (log: {log})")  # fmt: skip
        text = log.read_text(errors="replace")
        if proc.returncode != 0:
            failed = sorted(set(re.findall(r"\[(\S+?)\]\s+Error", text)))
            say(f"    run {attempt} failed on {', '.join(failed) or '?'} (exit {proc.returncode}; "
                f"see {log}); running it again, as a user would")  # fmt: skip
            continue
        if _no_drift(bench, inventory):
            say(f"    tfenv reconcile: no drift on any of the {count} host(s): provisioned")
            return
    raise SystemExit(f"tf_node still fails or changes something after 3 runs; see "
                     f"{WORK}/provision-3.log")  # fmt: skip


def _no_drift(bench: Bench, inventory: str) -> bool:
    check = subprocess.run([sys.executable, "-c", "from tfenv.cli import main; main()",
                            "reconcile", inventory, "--quiet", "--state-dir",
                            str(WORK / "provision-check")], cwd=REPO, env=bench.env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    if check.returncode not in (0, 2):
        say(f"    tfenv reconcile exit {check.returncode}: {(check.stdout + check.stderr)[-300:]}")
    return check.returncode == 0


def read_declared(bench: Bench) -> dict:
    """The state tf_node left on lab-1, for d) and e) to declare (files under WORK/files)."""
    script = (COMPARISON / "readout.py").read_text()
    raw = json.loads(bench.on_hosts(bench.names(1), f"sudo python3 - {CONTAINER}", script)[0])
    files_dir = WORK / "files"
    shutil.rmtree(files_dir, ignore_errors=True)
    for entry in raw["files"]:
        target = files_dir / entry["path"].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(entry["content"]))
    container = raw["container"]
    container["ansible_mounts"] = [
        {"type": m["Type"], "source": m["Source"], "target": m["Target"],
         "read_only": bool(m.get("ReadOnly"))}
        for m in container["mounts"]
    ]  # fmt: skip
    binds = []
    for bind in container["binds"]:
        source, target, *mode = bind.split(":")
        binds.append({"type": "bind", "source": source, "target": target,
                      "read_only": "ro" in (mode[0].split(",") if mode else [])})  # fmt: skip
    container["ansible_mounts"] += binds
    container["ansible_env"] = dict(e.split("=", 1) for e in container["env"])
    registry = bench.state.registry
    raw["registry"] = {"host": registry["host"], "username": registry["username"],
                       "password_file": registry["password_file"]}  # fmt: skip
    raw["pinned"] = [f"{name}={version}" for name, version in raw["packages"].items()]
    bench.declared.write_text(json.dumps(raw, indent=1, sort_keys=True))
    say(f"    declared for d) and e): {len(raw['packages'])} held package(s), "
        f"{len(raw['files'])} file(s), {len(raw['units'])} unit(s), container "
        f"{container['name']} ({container['image'][:60]}...)")  # fmt: skip
    return raw


def ensure_ansible() -> Path:
    binary = ANSIBLE_VENV / "bin" / "ansible-playbook"
    requirements = COMPARISON / "ansible" / "requirements.txt"
    stamp = ANSIBLE_VENV / ".requirements"
    if binary.exists() and stamp.exists() and stamp.read_text() == requirements.read_text():
        return binary
    say(f"installing Ansible into {ANSIBLE_VENV} ({requirements}; a minute)")
    shutil.rmtree(ANSIBLE_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
    subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "-r", str(requirements)],
                   check=True)  # fmt: skip
    stamp.write_text(requirements.read_text())
    return binary


def ansible_files(bench: Bench, sizes: list[int]) -> None:
    """Inventories (INI) and ansible.cfg: same key and known_hosts as everything else."""
    state = bench.state
    for count in sizes:
        lines = ["[lab]"]
        for host in state.hosts[:count]:
            lines.append(f"{host.name} ansible_host=127.0.0.1 ansible_port={host.port}")
        lines += ["", "[lab:vars]", f"ansible_user={state.user}",
                  f"ansible_ssh_private_key_file={state.key}",
                  "ansible_python_interpreter=/usr/bin/python3"]  # fmt: skip
        (WORK / f"ansible-{count}.ini").write_text("\n".join(lines) + "\n")
    (WORK / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = True\nretry_files_enabled = False\n"
        "interpreter_python = /usr/bin/python3\n\n[ssh_connection]\npipelining = True\n"
        f"ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile="
        f"{state.known_hosts} -o StrictHostKeyChecking=yes\n"
    )


def argv_of(method: str, bench: Bench, count: int, ansible: Path) -> tuple[list[str], dict]:
    inventory = str(bench.inventory(count))
    env = dict(bench.env)
    if method == "a":
        state_dir = tempfile.mkdtemp(prefix="tfenv-bench-reconcile-", dir=WORK)
        return [sys.executable, "-c", "from tfenv.cli import main; main()", "reconcile",
                inventory, "--quiet", "--state-dir", state_dir], env  # fmt: skip
    if method == "b":
        return [sys.executable, "-m", "pyinfra", "-y", inventory, "deploys/tf_node.py"], env
    if method in ("c-read", "c-apply"):
        return [sys.executable, __file__, "--one-ssh-per-host", method, str(count)], env
    if method == "d":
        env.update(ANSIBLE_CONFIG=str(WORK / "ansible.cfg"), ANSIBLE_FORKS=str(count),
                   ANSIBLE_SSH_CONTROL_PATH_DIR=tempfile.mkdtemp(prefix="cp-", dir=WORK),
                   ANSIBLE_LOCAL_TEMP=tempfile.mkdtemp(prefix="tmp-", dir=WORK))  # fmt: skip
        return [
            str(ansible),
            "-i",
            str(WORK / f"ansible-{count}.ini"),
            "--check",
            "--forks",
            str(count),
            "-e",
            f"declared_file={bench.declared}",
            "-e",
            f"files_dir={WORK / 'files'}",
            str(COMPARISON / "ansible" / "tf_node_check.yml"),
        ], env
    if method == "e":
        env["TFENV_BENCH_DECLARED"] = str(bench.declared)
        return [sys.executable, "-m", "pyinfra", "-y", inventory,
                str(COMPARISON / "plain_pyinfra.py")], env  # fmt: skip
    raise ValueError(method)


def one_ssh_per_host(method: str, count: int) -> None:
    """The lower bound (run as its own process, so it is measured like the others)."""
    from tfenv.lab.fleet import current_state

    state = current_state()
    health = ContainerHealth().command([CONTAINER]).get_raw_value()
    script = GPU_SCRIPT + "\n" + NODE_SCRIPT
    if method == "c-apply":
        script += "\n" + health
    hosts = state.hosts[:count]

    def read(host: LabHost) -> int:
        argv = ssh_command(state.key, state.known_hosts, host.port, state.user)
        return subprocess.run([*argv, "sudo sh -s"], input=script, capture_output=True,
                              text=True, check=False).returncode  # fmt: skip

    with ThreadPoolExecutor(len(hosts)) as pool:
        codes = list(pool.map(read, hosts))
    sys.exit(max(codes))


# --- counting remote commands on the hosts -------------------------------------------------


def count_commands(bench: Bench, count: int, argv: list[str], env: dict) -> tuple[int, int, Run]:
    """Remote commands per host of one run of ``argv``: sshd's "Starting session"
    lines between a journal cursor taken before and the run's end. (min, max, the run)."""
    names = bench.names(count)
    cursors = [
        out.strip().rsplit("cursor: ", 1)[-1]
        for out in bench.on_hosts(names, "sudo journalctl -q -t sshd -n 0 --show-cursor")
    ]
    time.sleep(1)
    result = measured(argv, env)
    ended = time.time()
    time.sleep(2)  # the counting session starts after --until
    counts = []
    for name, cursor in zip(names, cursors, strict=True):
        out = bench.on_hosts([name], f"sudo journalctl -q -t sshd -o cat --after-cursor='{cursor}'"
                             f" --until=@{ended + 1:.0f}")[0]  # fmt: skip
        counts.append(sum(line.startswith("Starting session:") for line in out.splitlines()))
    log = WORK / "runs" / f"N{count}-{argv_name(argv)}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(result.output)  # its end, for a look at what it said (Ansible's recap)
    return min(counts), max(counts), result


def argv_name(argv: list[str]) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", " ".join(Path(a).name for a in argv[:6]))[:80]


# --- the report ----------------------------------------------------------------------------


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def machine_line() -> str:
    cpus = os.cpu_count()
    with open("/proc/meminfo") as handle:
        total = int(handle.readline().split()[1]) // 1024
    model = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{platform.node()}: {cpus} CPU(s) ({model}), {total} MiB memory, "
            f"Linux {platform.release()}, Python {platform.python_version()}")  # fmt: skip


def load_line() -> str:
    with open("/proc/loadavg") as handle:
        return "load average " + " ".join(handle.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,10,30", help="host counts (default 1,10,30)")
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds (default 1)")
    parser.add_argument("--only", default=",".join(METHODS), help="methods to run")
    parser.add_argument(
        "--slow-after",
        type=float,
        default=0.0,
        help="a case whose warm-up takes longer (s) gets --slow-rounds "
        "counted rounds at that N (default: off)",
    )
    parser.add_argument("--slow-rounds", type=int, default=2, help="see --slow-after")
    parser.add_argument("--keep-lab", action="store_true", help="leave the scale lab up")
    parser.add_argument("--results", default=str(RESULTS), help="where the table goes")
    parser.add_argument("--one-ssh-per-host", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_ssh_per_host:
        one_ssh_per_host(args.one_ssh_per_host[0], int(args.one_ssh_per_host[1]))
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    methods = [m for m in METHODS if m in args.only.split(",")]
    # Orphans (ssh ControlPersist masters) come back to this process: counted, ended.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    WORK.mkdir(exist_ok=True)
    started = time.monotonic()
    state = lab_up(max(sizes))
    env = {**os.environ, "TFENV_LAB_DIR": str(LAB.directory.resolve()),
           "PYTHONPATH": str(REPO)}  # fmt: skip
    os.environ["TFENV_LAB_DIR"] = env["TFENV_LAB_DIR"]
    bench = Bench(state, env)
    write_inventories(bench, sizes)
    provision(bench, max(sizes))
    read_declared(bench)
    ansible = ensure_ansible() if "d" in methods else Path("ansible-playbook")
    if "d" in methods:
        ansible_files(bench, sizes)
        say("Ansible prerequisites (python3-requests for community.docker; once, for real)")
        env_d = argv_of("d", bench, max(sizes), ansible)[1]
        pre = measured([str(ansible), "-i", str(WORK / f"ansible-{max(sizes)}.ini"),
                        str(COMPARISON / "ansible" / "prerequisites.yml")], env_d)  # fmt: skip
        if pre.rc != 0:
            raise SystemExit("the Ansible prerequisites failed:\n" + pre.output)
    figures: dict[int, dict[str, dict]] = {}
    for count in sizes:
        figures[count] = {m: {"commands": None, "runs": [], "rcs": set()} for m in methods}
        total = args.warmup + args.rounds
        for number in range(total):
            warm = number < args.warmup
            kind = "warm-up" if warm else f"round {number - args.warmup + 1}"
            order = methods[number % len(methods) :] + methods[: number % len(methods)]
            line = []
            for method in order:
                entry = figures[count][method]
                if not warm and len(entry["runs"]) >= entry.get("quota", args.rounds):
                    continue  # a slow case's counted runs are done
                argv, env_m = argv_of(method, bench, count, ansible)
                if entry["commands"] is None:  # a case's first run also counts its commands
                    low, high, run = count_commands(bench, count, argv, env_m)
                    entry["commands"] = (low, high)
                    say(f"    {TITLES[method]:<34} {low if low == high else f'{low}-{high}'} "
                        "remote command(s) per host")  # fmt: skip
                else:
                    run = measured(argv, env_m)
                entry["rcs"].add(run.rc)
                if run.rc not in (0,):
                    say(f"    {method} exited {run.rc}:\n{run.output[-1500:]}")
                if warm and args.slow_after and run.wall > args.slow_after:
                    entry["quota"] = args.slow_rounds
                if not warm:
                    entry["runs"].append(run)
                line.append(f"{method} {run.wall:.1f}s")
            say(f"N = {count}, {kind}/{args.rounds}: " + ", ".join(line))
        show(count, figures[count])
    write_results(Path(args.results), sizes, figures, args, time.monotonic() - started)
    if not args.keep_lab:
        from tfenv.lab.fleet import down

        say("taking the scale lab down (--keep-lab leaves it)")
        down(LAB)


def summary(entry: dict) -> dict:
    runs: list[Run] = entry["runs"]
    return {
        "wall": statistics.median(r.wall for r in runs),
        "wall_text": f"{median_range([r.wall for r in runs])}, n={len(runs)}",
        "cpu": statistics.median(r.cpu for r in runs),
        "pss": max(r.pss_mib for r in runs),
        "rss": max(r.rss_mib for r in runs),
        "fds": max(r.fds for r in runs),
        "commands": entry["commands"],
        "rcs": sorted(entry["rcs"]),
    }


def show(count: int, entries: dict[str, dict]) -> None:
    print(f"\nN = {count}")
    print(f"  {'':<34} {'wall s median (min-max)':>26} {'x c)':>6} {'cmds/host':>9} "
          f"{'CPU s':>7} {'peak PSS MiB':>12} {'fds':>5}")  # fmt: skip
    for method, entry in entries.items():
        s = summary(entry)
        bound = BOUND.get(method)
        ratio = f"{s['wall'] / summary(entries[bound])['wall']:.2f}" if bound in entries else ""
        low, high = s["commands"]
        print(f"  {TITLES[method]:<34} {s['wall_text']:>26} {ratio:>6} "
              f"{low if low == high else f'{low}-{high}':>9} {s['cpu']:>7.2f} "
              f"{s['pss']:>12.0f} {s['fds']:>5}")  # fmt: skip


def write_results(path: Path, sizes: list[int], figures: dict, args: argparse.Namespace,
                  elapsed: float) -> None:  # fmt: skip
    from fleet_report import render  # the Markdown: tables, targets, projection

    summaries = {n: {m: summary(e) for m, e in f.items()} for n, f in figures.items()}
    text = render(summaries, TITLES, BOUND, machine=machine_line(), load=load_line(),
                  rounds=args.rounds, warmup=args.warmup, elapsed=elapsed,
                  when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))  # fmt: skip
    path.write_text(text)
    (WORK / "figures.json").write_text(json.dumps(summaries, indent=1))
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
