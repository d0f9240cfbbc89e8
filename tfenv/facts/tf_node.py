"""One wide fact for what a TF node runs: in one round trip, everything above the GPU base.

:class:`TfNode` runs one shell script that prints sections:

- ``sealed``: every file tfenv wrote a secret to (registry logins, container
  secrets) with its *seal* (a slow, salted digest the control machine can
  recompute from the value: see :mod:`tfenv.operations.sealed_file`), whether
  the file still holds what was written (checked on the host, against a
  digest that never leaves it), and its mode and owner. Never a value.
- ``certs``: sha256 of each registry CA under /etc/docker/certs.d.
- ``images``: every local image's ``name@digest`` and ID.
- ``containers``: ``docker inspect`` of every container labelled
  ``tfenv.managed=true``, reduced to what the option table reads
  (:mod:`tfenv.containers.options`).
- ``busy``: for each running one, what keeps it in use (SSH sessions, Jupyter
  kernels, GPU processes: :mod:`tfenv.containers.busy`).
- ``mounts``: tfenv's mount units (text and state) and what is mounted where.

Parsing is pure and tested with captured output (tests/facts/tf_node.TfNode/).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pyinfra.api import FactBase

from tfenv.containers.busy import BUSY_FUNCTIONS
from tfenv.containers.options import read_options
from tfenv.facts.sections import MARK, read_state, split_sections
from tfenv.layout import MANAGED_LABEL, SEAL_SUFFIX, TFENV_ETC, UNIT_MARKER

SECTIONS = ("docker", "sealed", "certs", "images", "containers", "busy", "units", "mounted")

# A seal file holds two lines: the seal (shown) and the sha256 of the content
# as written (compared here, on the host, and never printed).
SCRIPT = f"""\
{BUSY_FUNCTIONS}s() {{ echo '{MARK}'"$1"; }}
s docker; if ! command -v docker >/dev/null 2>&1; then echo absent; \
elif timeout 60 docker info --format '{{{{.ServerVersion}}}}' >/dev/null 2>&1; then echo ok; \
else echo down; fi
s sealed; find {TFENV_ETC} -name '*{SEAL_SUFFIX}' -type f 2>/dev/null | sort | \
while read -r seal; do f="${{seal%{SEAL_SUFFIX}}}"; if [ ! -f "$f" ]; then status=missing; \
elif [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$(sed -n 2p "$seal")" ]; then status=intact; \
else status=altered; fi; \
printf '%s\\t%s\\t%s\\t%s\\n' "$f" "$(head -n 1 "$seal")" "$status" \
"$(stat -c '%a %u %g' "$f" 2>/dev/null)"; done
s certs; sha256sum /etc/docker/certs.d/*/ca.crt 2>/dev/null
s images; timeout 60 docker image ls --digests --no-trunc \
--format '{{{{.Repository}}}}@{{{{.Digest}}}}\t{{{{.ID}}}}' 2>/dev/null | grep -v '@<none>'
s containers; ids=$(timeout 60 docker ps -aq --no-trunc --filter label={MANAGED_LABEL}=true \
2>/dev/null); [ -n "$ids" ] && timeout 60 docker inspect $ids
s busy; [ -n "$ids" ] && tfenv_gpu_apps && for c in $(timeout 60 docker ps --filter \
label={MANAGED_LABEL}=true --format '{{{{.Names}}}}' 2>/dev/null); do tfenv_busy "$c" -1 | \
while IFS= read -r line; do printf '%s\\t%s\\n' "$c" "$line"; done; \
printf '%s\\tchecked\\n' "$c"; done
s units; for f in /etc/systemd/system/*.mount; do grep -qx '{UNIT_MARKER}' "$f" 2>/dev/null \
|| continue; echo "== $f"; sed -e '$a\\' "$f"; \
echo "== state $(systemctl is-active "$(basename "$f")" 2>/dev/null)"; done
s mounted; findmnt -rn -o TARGET,SOURCE,FSTYPE 2>/dev/null
true
"""


@dataclass(frozen=True)
class SealedFile:
    seal: str
    status: str  # "intact", "altered" (changed behind our back) or "missing"
    mode: str = ""  # octal, as stat prints it: "400"
    uid: int = -1
    gid: int = -1


@dataclass(frozen=True)
class MountUnit:
    text: str
    active: str  # systemctl is-active: active, inactive, failed, ...


@dataclass
class ObservedContainer:
    """A tfenv container as ``docker inspect`` shows it: its state, and each
    option of the option table as read (``options``: field -> reading)."""

    name: str
    id: str
    image_id: str
    running: bool
    status: str
    health: str | None
    labels: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # What keeps it in use, as tfenv_busy prints it (see tfenv.containers.busy),
    # and whether that was read at all (never assume idle)
    busy: list[str] = field(default_factory=list)
    busy_checked: bool = False

    @property
    def image(self) -> str:
        """Config.Image: the reference it was created from."""
        return str(self.options.get("image", ""))


@dataclass
class TfNodeState:
    docker: str = "absent"  # "ok", "down" or "absent"
    sealed: dict[str, SealedFile] = field(default_factory=dict)
    certs: dict[str, str] = field(default_factory=dict)  # path -> sha256
    images: dict[str, str] = field(default_factory=dict)  # name@digest -> image ID
    containers: dict[str, ObservedContainer] = field(default_factory=dict)
    units: dict[str, MountUnit] = field(default_factory=dict)
    mounted: dict[str, tuple[str, str]] = field(default_factory=dict)  # target -> (source, type)
    containers_error: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> TfNodeState:
        values = dict(data)
        values["sealed"] = {k: SealedFile(**v) for k, v in values.get("sealed", {}).items()}
        values["containers"] = {
            k: ObservedContainer(**v) for k, v in values.get("containers", {}).items()
        }
        values["units"] = {k: MountUnit(**v) for k, v in values.get("units", {}).items()}
        values["mounted"] = {k: tuple(v) for k, v in values.get("mounted", {}).items()}
        return cls(**values)

    def to_json(self) -> dict:
        return asdict(self)

    def has_image(self, pinned: str) -> bool:
        return pinned in self.images


def reduce_inspect(entry: dict[str, Any]) -> ObservedContainer:
    """A container's state and option readings, from one ``docker inspect`` entry."""
    config = entry.get("Config") or {}
    state = entry.get("State") or {}
    return ObservedContainer(
        name=(entry.get("Name") or "").lstrip("/"),
        id=entry.get("Id", ""),
        image_id=entry.get("Image", ""),
        running=bool(state.get("Running")),
        status=state.get("Status", ""),
        health=(state.get("Health") or {}).get("Status"),
        labels=dict(config.get("Labels") or {}),
        started_at=state.get("StartedAt", ""),
        options=read_options(entry),
    )


def parse(lines: list[str]) -> TfNodeState:
    sections = split_sections(lines, SECTIONS)
    state = TfNodeState(docker=(sections["docker"] or ["absent"])[0].strip() or "absent")
    for line in sections["sealed"]:
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        path, seal, status, stat = parts
        mode, uid, gid = [*stat.split(), "", "-1", "-1"][:3]
        state.sealed[path] = SealedFile(seal.strip(), status, mode, int(uid), int(gid))
    for line in sections["certs"]:
        digest, _, path = line.partition("  ")
        if path:
            state.certs[path.strip()] = digest.strip()
    for line in sections["images"]:
        reference, _, image_id = line.partition("\t")
        if "@sha256:" in reference:
            state.images[reference.strip()] = image_id.strip()
    text = "\n".join(sections["containers"]).strip()
    if text:
        try:
            for entry in json.loads(text):
                container = reduce_inspect(entry)
                state.containers[container.name] = container
        except (json.JSONDecodeError, TypeError, AttributeError, KeyError) as exc:
            state.containers_error = f"unreadable docker inspect output: {exc}"
    for line in sections["busy"]:
        name, _, what = line.partition("\t")
        if name in state.containers and what == "checked":
            state.containers[name].busy_checked = True
        elif name in state.containers and what:
            state.containers[name].busy.append(what)
    current = None
    for line in sections["units"]:
        if line.startswith("== state "):
            if current:
                state.units[current] = MountUnit(state.units[current].text, line[9:].strip())
        elif line.startswith("== /"):
            current = line[3:].strip()
            state.units[current] = MountUnit("", "")
        elif current is not None:
            unit = state.units[current]
            state.units[current] = MountUnit(unit.text + line + "\n", unit.active)
    for line in sections["mounted"]:
        parts = line.split(" ")
        if len(parts) >= 3:
            # findmnt -r escapes spaces as \x20
            target = parts[0].replace("\\x20", " ")
            state.mounted[target] = (parts[1].replace("\\x20", " "), parts[2])
    return state


class TfNode(FactBase):
    """What a TF node runs (see :class:`TfNodeState`), in one command. Run it with sudo."""

    def command(self, exec_probes: bool = True) -> str:
        # exec_probes=False: nothing runs inside a container (Jupyter is not asked
        # about kernels); for tfenv reconcile's check.
        return SCRIPT if exec_probes else "tfenv_no_exec=1\n" + SCRIPT

    def process(self, output: list[str]) -> TfNodeState:
        return parse(output)


def tf_node(host, exec_probes: bool = True) -> TfNodeState:
    """``host``'s TfNode fact as a TfNodeState (fixture tests inject it as JSON)."""
    if exec_probes:
        return read_state(host, TfNode, TfNodeState)
    return read_state(host, TfNode, TfNodeState, exec_probes=False)
