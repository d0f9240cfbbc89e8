"""The reconcile report: per host, whether it was checked and each drift item.

One report per run (or per shard; :func:`merge` joins shard reports). Its JSON
form is versioned (``schema``) and documented in docs/reconcile.md; names are
stable. Items never carry a secret's value: operations record secret files by
path, mode, owner and "altered", never content.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

SCHEMA = "tfenv.reconcile/1"

# Every area a drift item belongs to, in the order reports show them.
AREAS = (
    "clock",  # the host's clock against the control machine's
    "docker",  # Docker engine: packages, version, hold, running
    "driver",  # NVIDIA driver: packages, hold, pin, loaded module, pending reboot
    "toolkit",  # NVIDIA container toolkit packages and Docker's nvidia runtime
    "daemon-json",  # /etc/docker/daemon.json's nvidia runtime
    "apt",  # apt repositories, keyrings, pins
    "registry",  # registry login files and CA certificates
    "nfs",  # NFS mount units: unit text, mounted, options
    "images",  # pinned images present by digest
    "secrets",  # secret files and authorized_keys: seal, mode, owner (never values)
    "containers",  # every declared container field, running/stopped/unhealthy
    "undeclared",  # tfenv-labelled containers no longer declared
    "other",  # an operation that would change something and named no field
)

# Item actions: "apply" = the tf_node deploy fixes it unattended (reconcile --apply);
# "person" = it needs a person (the item's command says what to run);
# "rollout" = not drift: a rollout in progress put it there (its command: tfenv rollout status ID).
ACTIONS = ("apply", "person", "rollout")

# Exit codes, like terraform plan -detailed-exitcode.
EXIT_CLEAN, EXIT_UNCHECKED, EXIT_DRIFT, EXIT_BAD_INPUT = 0, 1, 2, 3

# Host and area statuses, worst first.
STATUSES = ("unreachable", "needs-a-person", "drift", "rollout-in-progress", "clean")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Item:
    """One field of one host that differs from its declared state."""

    area: str
    field: str  # stable within its area: "nvidia-driver.version", "dev.env", "dev.running"
    declared: str
    observed: str
    action: str = "apply"
    command: str = ""  # for action "person": what to run
    first_seen: str | None = None  # from the history, when known (ISO 8601 UTC)

    @property
    def key(self) -> tuple[str, str]:
        return (self.area, self.field)


@dataclass
class HostResult:
    name: str
    checked: bool
    error: str | None = None  # why it could not be checked
    items: list[Item] = field(default_factory=list)
    # --apply: None (not applied), "applied" (the deploy ran and succeeded) or
    # "failed: REASON"
    applied: str | None = None

    @property
    def status(self) -> str:
        if not self.checked:
            return "unreachable"
        return _worst(self.items)

    def area_status(self, area: str) -> str:
        if not self.checked:
            return "unreachable"
        return _worst([item for item in self.items if item.area == area])


def _worst(items: list[Item]) -> str:
    if any(item.action == "person" for item in items):
        return "needs-a-person"
    if any(item.action == "apply" for item in items):
        return "drift"
    return "rollout-in-progress" if items else "clean"


@dataclass
class Report:
    inventory: str
    started: str
    finished: str = ""
    duration_s: float = 0.0
    shard: str | None = None  # "K/N" when sharded
    apply: bool = False
    deep: bool = False
    hosts: dict[str, HostResult] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """1 if any targeted host was not checked, else 2 on any drift, else 0."""
        if any(not h.checked for h in self.hosts.values()):
            return EXIT_UNCHECKED
        if any(item.action != "rollout" for h in self.hosts.values() for item in h.items):
            return EXIT_DRIFT
        return EXIT_CLEAN

    @property
    def totals(self) -> dict[str, int]:
        statuses = [h.status for h in self.hosts.values()]
        return {
            "hosts": len(self.hosts),
            "checked": sum(h.checked for h in self.hosts.values()),
            "clean": statuses.count("clean"),
            "drift": statuses.count("drift"),
            "needs_a_person": statuses.count("needs-a-person"),
            "unreachable": statuses.count("unreachable"),
            "rollout_in_progress": statuses.count("rollout-in-progress"),
            "items": sum(1 for h in self.hosts.values() for i in h.items if i.action != "rollout"),
        }

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "inventory": self.inventory,
            "started": self.started,
            "finished": self.finished,
            "duration_s": round(self.duration_s, 3),
            "shard": self.shard,
            "apply": self.apply,
            "deep": self.deep,
            "exit_code": self.exit_code,
            "totals": self.totals,
            "areas": list(AREAS),
            "hosts": {
                name: {
                    "status": h.status,
                    "checked": h.checked,
                    "error": h.error,
                    "applied": h.applied,
                    "areas": {area: h.area_status(area) for area in AREAS},
                    "items": [asdict(item) for item in h.items],
                }
                for name, h in sorted(self.hosts.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict) -> Report:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema: {data.get('schema')!r})")
        return cls(
            inventory=data["inventory"],
            started=data["started"],
            finished=data.get("finished", ""),
            duration_s=float(data.get("duration_s", 0.0)),
            shard=data.get("shard"),
            apply=bool(data.get("apply")),
            deep=bool(data.get("deep")),
            hosts={
                name: HostResult(
                    name=name,
                    checked=h["checked"],
                    error=h.get("error"),
                    applied=h.get("applied"),
                    items=[Item(**item) for item in h.get("items", [])],
                )
                for name, h in data.get("hosts", {}).items()
            },
        )


def merge(reports: list[Report]) -> Report:
    """One report from shard reports of the same run (hosts joined; a host in two
    shards is an error: the shards were not a partition)."""
    if not reports:
        raise ValueError("no reports to merge")
    merged = Report(
        inventory=reports[0].inventory,
        started=min(r.started for r in reports),
        finished=max(r.finished for r in reports),
        duration_s=max(r.duration_s for r in reports),
        apply=any(r.apply for r in reports),
        deep=all(r.deep for r in reports),
    )
    for report in reports:
        for name, result in report.hosts.items():
            if name in merged.hosts:
                raise ValueError(
                    f"host {name} is in two reports (shards {merged_shard(reports, name)}): "
                    "merge the reports of one sharded run"
                )
            merged.hosts[name] = result
    return merged


def merged_shard(reports: list[Report], host: str) -> str:
    return ", ".join(str(r.shard) for r in reports if host in r.hosts)
