"""One wide fact for a GPU host: everything the GPU base compares, in one round trip.

:class:`GpuHost` runs a single shell script that prints sections (OS and
kernel, ``nvidia-smi`` CSV and its exit code, the loaded module's version,
nouveau, Secure Boot, NVIDIA/Docker package versions and holds, daemon.json,
the runtimes Docker reports, the toolkit version, reboot-required), and
parses them into a :class:`GpuHostState`. Parsing is pure and tested with
captured output (tests/facts/gpu.GpuHost/).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field

from pyinfra.api import FactBase, QuoteString, StringCommand

from tfenv.containers.docker_up import wait_for_docker
from tfenv.facts.sections import MARK, read_state, split_sections
from tfenv.layout import DRIVER_ROLLOUT_FILE

SMI_FIELDS = "index,name,uuid,memory.total,driver_version,persistence_mode,pci.bus_id"
PACKAGE_PATTERNS = (
    "nvidia-*", "libnvidia-*", "cuda-drivers*", "cuda-keyring", "linux-headers-*",
    "docker.io", "docker-ce", "docker-ce-cli", "containerd*", "nfs-common",
)  # fmt: skip
SECTIONS = (
    "os", "kernel", "smi", "smi-rc", "module", "nouveau-loaded", "nouveau-blacklisted",
    "secureboot", "packages", "holds", "daemon-json", "docker-runtimes", "toolkit",
    "reboot-required", "apt-sources", "keyrings", "apt-tfenv-config", "clock",
    "driver-rollout",
)  # fmt: skip
KEYRING_DIRS = ("/usr/share/keyrings", "/etc/apt/keyrings")
KEYRING_WORDS = ("nvidia", "cuda", "docker")  # the keyrings tfenv manages
# Secure Boot's EFI variable: 4 bytes of attributes, then 1 (on) or 0 (off).
SECUREBOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

# Holds come from dpkg's selections (what apt-mark showhold prints, in 1/50 of its
# time: apt-mark loads the whole package cache).
# nvidia-smi and docker info get a timeout: on a wedged GPU or daemon they hang
# (nvidia-smi then exits 124: "timeout", never read as "absent").
SMI_TIMEOUT = 60
# Files may lack a final newline (nvidia-ctk writes daemon.json without one):
# an echo after each keeps the next section marker on its own line.
SCRIPT = f"""\
s() {{ echo '{MARK}'"$1"; }}
s os; cat /etc/os-release 2>/dev/null; echo
s kernel; uname -r
s smi; if command -v nvidia-smi >/dev/null 2>&1; then \
timeout {SMI_TIMEOUT} nvidia-smi --query-gpu={SMI_FIELDS} --format=csv,noheader,nounits \
2>&1; rc=$?; \
else rc=absent; fi; s smi-rc; echo "$rc"
s module; cat /proc/driver/nvidia/version 2>/dev/null; echo
s nouveau-loaded; grep -c '^nouveau ' /proc/modules 2>/dev/null
s nouveau-blacklisted; grep -ls '^[[:space:]]*blacklist[[:space:]]\\+nouveau' \
/etc/modprobe.d/*.conf /usr/lib/modprobe.d/*.conf /lib/modprobe.d/*.conf 2>/dev/null
s secureboot; if [ -d /sys/firmware/efi ]; then \
od -An -t u1 {SECUREBOOT_VAR} 2>/dev/null | awk '{{print $NF}}'; else echo legacy; fi
s packages; dpkg-query -W -f='${{Package}}\\t${{Version}}\\t${{db:Status-Abbrev}}\\n' \
{" ".join(f"'{p}'" for p in PACKAGE_PATTERNS)} 2>/dev/null
s holds; dpkg-query -W -f='${{db:Status-Abbrev}} ${{Package}}\\n' 2>/dev/null | \
awk '/^h/ {{print $2}}'
s daemon-json; cat /etc/docker/daemon.json 2>/dev/null; echo
s docker-runtimes; if command -v docker >/dev/null 2>&1; then \
timeout 60 docker info --format '{{{{json .Runtimes}}}}' 2>&1 | head -n 3; fi
s toolkit; nvidia-ctk --version 2>/dev/null | head -n 1
s reboot-required; cat /var/run/reboot-required 2>/dev/null && echo yes
s apt-sources; for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do \
[ -f "$f" ] && echo "== $f" && sed -e '$a\\' "$f"; done
s keyrings; sha256sum {" ".join(f"{d}/*{w}*" for d in KEYRING_DIRS for w in KEYRING_WORDS)} \
2>/dev/null
s apt-tfenv-config; for f in /etc/apt/preferences.d/tfenv-* /etc/apt/apt.conf.d/*tfenv*; do \
[ -f "$f" ] && echo "== $f" && sed -e '$a\\' "$f"; done
s clock; date -u +%s
s driver-rollout; cat {DRIVER_ROLLOUT_FILE} 2>/dev/null; echo
true
"""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str
    memory_mib: int
    pci_bus_id: str
    persistence: bool


@dataclass(frozen=True)
class Package:
    version: str
    installed: bool  # dpkg status "ii" or "hi" (held); not "rc" (removed, config kept)


@dataclass
class GpuHostState:
    """The observed GPU-related state of one host."""

    os_id: str = ""
    os_version: str = ""
    os_codename: str = ""
    kernel: str = ""
    # nvidia-smi: "ok", "absent" (not installed), "not-loaded" (exit 9),
    # "mismatch" (exit 18: module != library), "timeout" (hung: a wedged GPU or
    # driver), "error" (anything else).
    driver_state: str = "absent"
    driver_version: str | None = None  # userspace, when nvidia-smi answers
    nvml_version: str | None = None  # "550.144" from a mismatch message
    smi_error: str | None = None
    gpus: list[Gpu] = field(default_factory=list)
    module_version: str | None = None  # loaded kernel module (/proc/driver/nvidia/version)
    module_flavour: str | None = None  # "open" or "proprietary"
    nouveau_loaded: bool = False
    nouveau_blacklisted: bool = False
    secure_boot: bool | None = None  # None: legacy BIOS or unknown
    packages: dict[str, Package] = field(default_factory=dict)
    holds: list[str] = field(default_factory=list)
    daemon_json: dict | None = None  # None: no file
    daemon_json_error: str | None = None  # the file exists but is not valid JSON
    docker_runtimes: list[str] | None = None  # None: Docker not answering
    docker_error: str | None = None  # why `docker info` did not answer (permission, daemon down)
    toolkit_version: str | None = None
    reboot_required: bool = False
    apt_sources: dict[str, str] = field(default_factory=dict)  # sources.list.d file -> text
    keyrings: dict[str, str] = field(default_factory=dict)  # keyring path -> sha256
    # tfenv's apt pins and apt.conf snippets: path -> text
    apt_config: dict[str, str] = field(default_factory=dict)
    # The host's clock minus this machine's when the fact was read, in seconds
    # (None: unreadable). Computed as the output arrives, so a long planning
    # phase or a prompt never counts as skew.
    clock_skew: int | None = None
    # A driver rollout's record on this host (tfenv.layout.DRIVER_ROLLOUT_FILE):
    # {"id", "from", "to"}; None when there is none. Unreadable JSON: {"error": ...}.
    driver_rollout: dict | None = None

    @classmethod
    def from_json(cls, data: dict) -> GpuHostState:
        """The inverse of :meth:`to_json` (fixture tests inject facts as JSON)."""
        values = dict(data)
        values["gpus"] = [Gpu(**gpu) for gpu in values.get("gpus", [])]
        values["packages"] = {k: Package(**v) for k, v in values.get("packages", {}).items()}
        return cls(**values)

    def to_json(self) -> dict:
        """For ``pyinfra INVENTORY fact tfenv.facts.gpu.GpuHost`` and ``--json``."""
        return asdict(self)

    def installed(self, name: str) -> str | None:
        package = self.packages.get(name)
        return package.version if package and package.installed else None


def _os_release(lines: list[str]) -> dict[str, str]:
    values = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


MODULE_RE = re.compile(
    r"^NVRM version: NVIDIA UNIX (Open )?.*?Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)\s"
)
NVML_RE = re.compile(r"^NVML library version: (\S+)")


def parse(lines: list[str], now: float | None = None) -> GpuHostState:
    """The state in ``lines``; ``now`` (this machine's time) gives the clock skew."""
    sections = split_sections(lines, SECTIONS)
    release = _os_release(sections["os"])
    state = GpuHostState(
        os_id=release.get("ID", ""),
        os_version=release.get("VERSION_ID", ""),
        os_codename=release.get("VERSION_CODENAME", ""),
        kernel=(sections["kernel"] or [""])[0].strip(),
    )
    _parse_smi(state, sections["smi"], (sections["smi-rc"] or ["absent"])[0].strip())
    for line in sections["module"]:
        match = MODULE_RE.match(line)
        if match:
            state.module_version = match.group(2)
            state.module_flavour = "open" if match.group(1) else "proprietary"
    loaded = (sections["nouveau-loaded"] or ["0"])[0].strip()
    state.nouveau_loaded = loaded.isdigit() and int(loaded) > 0
    state.nouveau_blacklisted = any(line.strip() for line in sections["nouveau-blacklisted"])
    boot = [line.strip() for line in sections["secureboot"] if line.strip()]
    state.secure_boot = None if not boot or boot[0] == "legacy" else boot[-1] == "1"
    for line in sections["packages"]:
        parts = line.split("\t")
        if len(parts) == 3 and parts[1]:
            status = parts[2].strip()
            state.packages[parts[0]] = Package(parts[1], len(status) >= 2 and status[1] == "i")
    state.holds = sorted(line.strip() for line in sections["holds"] if line.strip())
    text = "\n".join(sections["daemon-json"]).strip()
    if text:
        try:
            parsed = json.loads(text)
            if isinstance(parsed, dict):
                state.daemon_json = parsed
            else:
                state.daemon_json_error = "not a JSON object"
        except json.JSONDecodeError as exc:
            state.daemon_json_error = f"invalid JSON: {exc.msg} (line {exc.lineno})"
    runtimes = "\n".join(sections["docker-runtimes"]).strip()
    if runtimes.startswith("{"):
        try:
            state.docker_runtimes = sorted(json.loads(runtimes.splitlines()[0]))
        except json.JSONDecodeError:
            state.docker_error = f"unreadable docker info output: {runtimes[:200]}"
    elif runtimes:
        state.docker_error = runtimes.splitlines()[0][:300]
    toolkit = " ".join(sections["toolkit"]).strip()
    match = re.search(r"version (\d+\.\d+\.\d+)", toolkit)
    state.toolkit_version = match.group(1) if match else None
    state.reboot_required = "yes" in (line.strip() for line in sections["reboot-required"])
    state.apt_sources = _files(sections["apt-sources"])
    state.apt_config = _files(sections["apt-tfenv-config"])
    clock = "".join(sections["clock"]).strip()
    if clock.isascii() and clock.isdigit() and now is not None:
        state.clock_skew = int(clock) - round(now)
    for line in sections["keyrings"]:
        digest, _, path = line.partition("  ")
        if path:
            state.keyrings[path.strip()] = digest.strip()
    marker = "\n".join(sections["driver-rollout"]).strip()
    if marker:
        try:
            state.driver_rollout = json.loads(marker)
        except json.JSONDecodeError as exc:
            state.driver_rollout = {"error": f"{DRIVER_ROLLOUT_FILE}: {exc.msg}"}
        if not isinstance(state.driver_rollout, dict):
            state.driver_rollout = {"error": f"{DRIVER_ROLLOUT_FILE}: not a JSON object"}
    return state


def _files(lines: list[str]) -> dict[str, str]:
    """``== PATH`` headers, each followed by that file's lines."""
    files: dict[str, str] = {}
    current = None
    for line in lines:
        if line.startswith("== /"):
            current = line[3:].strip()
            files[current] = ""
        elif current is not None:
            files[current] += line + "\n"
    return files


def _parse_smi(state: GpuHostState, output: list[str], rc: str) -> None:
    if rc == "absent":
        state.driver_state = "absent"
        return
    text = "\n".join(output).strip()
    if rc == "0":
        state.driver_state = "ok"
        for line in output:
            values = [value.strip() for value in line.split(",")]
            if len(values) != 7:
                continue
            index, name, uuid, memory, driver, persistence, bus = values
            state.driver_version = driver
            state.gpus.append(
                # "[N/A]" where a GPU cannot tell (MIG, fallen off the bus): 0.
                Gpu(
                    int(index),
                    name,
                    uuid,
                    int(memory) if memory.isdigit() else 0,
                    bus,
                    persistence == "Enabled",
                )
            )
        return
    state.smi_error = text.splitlines()[0] if text else f"nvidia-smi exited {rc}"
    if rc == "124":  # coreutils timeout: it hung, which says nothing about "absent"
        state.driver_state = "timeout"
        state.smi_error = (
            f"nvidia-smi did not answer within {SMI_TIMEOUT} s: a hung GPU or driver "
            "(look for Xid errors in dmesg)"
        )
    elif rc == "18" or "Driver/library version mismatch" in text:
        state.driver_state = "mismatch"
        for line in output:
            match = NVML_RE.match(line.strip())
            if match:
                state.nvml_version = match.group(1)
    elif rc == "9" or "couldn't communicate with the NVIDIA driver" in text:
        state.driver_state = "not-loaded"
    else:
        state.driver_state = "error"


class GpuHost(FactBase):
    """
    The GPU-related state of a host in one command (see :class:`GpuHostState`).
    Run it with sudo: ``docker info`` needs it.
    """

    def command(self) -> str:
        return SCRIPT

    def process(self, output: list[str]) -> GpuHostState:
        return parse(output, now=time.time())


def gpu_host(host) -> GpuHostState:
    """``host``'s GpuHost fact as a GpuHostState (fixture tests inject it as JSON)."""
    return read_state(host, GpuHost, GpuHostState)


class GpuInContainer(FactBase):
    """
    What ``nvidia-smi -L`` prints inside a throwaway container of ``image`` with
    ``--gpus all``: ``{"rc": int, "lines": [...]}``. The image must be present
    (``--pull never``) and the container gets no network.
    """

    def command(self, image: str) -> StringCommand:
        return StringCommand(
            wait_for_docker(fail=False), ";",  # dockerd may be restarting
            "timeout", "120", "docker", "run", "--rm", "--pull", "never", "--network", "none",
            "--gpus", "all", QuoteString(image), "nvidia-smi", "-L", "2>&1;", "echo", '"rc=$?"',
        )  # fmt: skip

    def process(self, output: list[str]) -> dict:
        rc = -1
        if output and output[-1].startswith("rc="):
            rc = int(output[-1][3:]) if output[-1][3:].isdigit() else -1
            output = output[:-1]
        return {"rc": rc, "lines": [line for line in output if line.strip()]}
