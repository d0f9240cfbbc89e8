"""Is a dev container in use? Read on the host, judged here, checked again right
before a replacement.

Three signals, read by one shell function (:data:`BUSY_FUNCTIONS`) that both the
TfNode fact (for every running tfenv container, in its one round trip) and the
replace command (a last check, or a wait loop, on the host) run:

- ``ssh``: established TCP connections to the container's sshd port, read
  from ``/proc/PID/net/tcp{,6}`` of the container's first process, so from
  its network namespace, without entering it. Loopback peers (the health
  probe, Docker's healthcheck) do not count.
- ``kernel``: Jupyter's kernels from its REST API, asked from inside the
  container (``docker exec``) with the token read from the secret file there:
  the token never reaches a command line.
- ``gpu``: the host's ``nvidia-smi --query-compute-apps`` processes whose
  cgroup is the container's. Asked on the host, not inside: inside a
  container's PID namespace nvidia-smi cannot name the processes.

A signal that cannot be read is reported as such (``*-error``) and counts as
busy: a container is never replaced on a guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tfenv.layout import SSH_PORT_LABEL

if TYPE_CHECKING:
    from tfenv.facts.tf_node import ObservedContainer

# The Jupyter probe runs inside the container (python3 is there: Jupyter is).
# No single quote in it: the shell holds it in a single-quoted variable.
KERNELS_PROBE = """
import datetime, json, os, sys, time, urllib.error, urllib.request
idle = int(sys.argv[1])
token_file = os.environ.get("JUPYTER_TOKEN_FILE")
if not token_file:
    sys.exit(0)
try:
    with open(token_file) as f:
        token = f.read().strip()
    url = "http://127.0.0.1:%s/api/kernels" % os.environ.get("JUPYTER_PORT", "8888")
    request = urllib.request.Request(url, headers={"Authorization": "token " + token})
    kernels = json.load(urllib.request.urlopen(request, timeout=10))
except urllib.error.URLError as exc:
    if isinstance(exc.reason, ConnectionRefusedError):
        sys.exit(0)  # nothing listens: no Jupyter server, so no kernels
    print("kernel-error", str(exc)[:160].replace(chr(10), " "))
    sys.exit(0)
except Exception as exc:
    print("kernel-error", type(exc).__name__, str(exc)[:160].replace(chr(10), " "))
    sys.exit(0)
now = time.time()
for kernel in kernels:
    last = (kernel.get("last_activity") or "").replace("Z", "+00:00")
    try:
        age = int(now - datetime.datetime.fromisoformat(last).timestamp())
    except ValueError:
        age = -1
    state = kernel.get("execution_state") or "unknown"
    if idle < 0 or state != "idle" or age < idle * 60:  # age -1: unreadable, so in use
        print("kernel", (kernel.get("id") or "?")[:8], state, age)
"""

LOOPBACK_PEERS = (
    "0100007F",  # 127.0.0.1
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
)

# tfenv_gpu_apps: the host's GPU processes, once per script (nvidia-smi is slow
# on big hosts). tfenv_busy NAME IDLE_MINUTES: one line per thing in use
# (IDLE_MINUTES -1: every Jupyter kernel, busy or not, with its age). With
# tfenv_no_exec set, Jupyter is not asked (that needs a docker exec): reconcile's
# check execs nothing; every replacement still runs the whole check first.
BUSY_FUNCTIONS = f"""\
tfenv_kernels_probe='{KERNELS_PROBE}'
tfenv_gpu_apps() {{ tfenv_apps=; command -v nvidia-smi >/dev/null 2>&1 || return 0; \
tfenv_apps=$(timeout 60 nvidia-smi --query-compute-apps=pid,process_name,used_memory \
--format=csv,noheader,nounits 2>&1) || \
tfenv_apps="error: $(printf '%s' "$tfenv_apps" | head -n 1)"; }}
tfenv_busy() {{ info=$(timeout 60 docker inspect -f '{{{{.State.Running}}}} \
{{{{.State.Pid}}}} {{{{.Id}}}} {{{{len .HostConfig.DeviceRequests}}}} \
{{{{index .Config.Labels "{SSH_PORT_LABEL}"}}}}' \
"$1" 2>&1) || {{ echo "inspect-error $info"; return 0; }}; set -- "$1" "$2" $info; \
[ "$3" = true ] || return 0; hex=$(printf '%04X' "$7" 2>/dev/null) || hex=none; \
cat /proc/"$4"/net/tcp /proc/"$4"/net/tcp6 2>/dev/null | awk -v p=":$hex" \
'$4 == "01" && substr($2, length($2) - 4) == p && \
$3 !~ /^({"|".join(LOOPBACK_PEERS)}):/ {{ print "ssh", $3 }}'; \
if [ "$6" != 0 ]; then case "$tfenv_apps" in \
"error: "*) echo "gpu-error ${{tfenv_apps#error: }}";; \
*) printf '%s\\n' "$tfenv_apps" | while IFS=, read -r gpid gname gmem; do \
gpid=$(echo $gpid); [ -n "$gpid" ] && grep -qs "$5" /proc/"$gpid"/cgroup && \
echo "gpu $gpid,$gname,$gmem"; done;; esac; fi; \
[ -n "${{tfenv_no_exec:-}}" ] || {{ timeout 60 docker exec "$1" python3 -c \
"$tfenv_kernels_probe" "$2" 2>&1 | grep '^kernel' || true; }}; }}
"""


def _peer(hex_address: str) -> str:
    """``0100A8C0:D10E`` (as /proc/net/tcp shows it) -> ``192.168.0.1:53518``."""
    address, _, port = hex_address.partition(":")
    try:
        raw = bytes.fromhex(address)
        # /proc/net/tcp prints each 32-bit word in host (little-endian) order.
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        ip = ipaddress.ip_address(words)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return f"{ip}:{int(port, 16)}"
    except ValueError:
        return hex_address


def busy_reasons(lines: Iterable[str], idle_minutes: int) -> list[str]:
    """What keeps a container in use, in words, from :data:`BUSY_FUNCTIONS`' lines
    (read with IDLE_MINUTES -1): an empty list means idle."""
    reasons = []
    for line in lines:
        kind, _, rest = line.strip().partition(" ")
        if kind == "ssh":
            reasons.append(f"an SSH session from {_peer(rest)}")
        elif kind == "kernel":
            parts = rest.split()
            if len(parts) != 3:
                reasons.append(f"a Jupyter kernel it could not read ({rest})")
                continue
            kernel, state, age = parts[0], parts[1], int(parts[2])
            if state != "idle":
                reasons.append(f"Jupyter kernel {kernel} is {state}")
            elif age < 0:  # never a guess: a time it could not read counts as in use
                reasons.append(f"Jupyter kernel {kernel}: its last activity could not be read")
            elif age < idle_minutes * 60:
                reasons.append(
                    f"Jupyter kernel {kernel} was active {age} s ago "
                    f"(idle after {idle_minutes} min)"
                )
        elif kind == "gpu":
            pid, name, memory = [*rest.split(",", 2), "", ""][:3]
            reasons.append(f"GPU process {pid.strip()} ({name.strip()}, {memory.strip()} MiB)")
        elif kind.endswith("-error"):
            what = {"gpu-error": "GPU processes", "kernel-error": "Jupyter kernels"}
            reasons.append(
                f"could not read its {what.get(kind, 'state')} ({rest.strip()[:160]}), "
                "so it counts as in use"
            )
    return reasons


def in_use(observed: ObservedContainer, idle_minutes: int) -> list[str]:
    """Why ``observed`` must not be replaced without its policy's say; [] when idle.
    A stopped container has no users; a running one whose check did not run is in use."""
    if not observed.running:
        return []
    reasons = busy_reasons(observed.busy, idle_minutes)
    if not observed.busy_checked:
        reasons.append("whether it is in use could not be read, so it counts as in use")
    return reasons
