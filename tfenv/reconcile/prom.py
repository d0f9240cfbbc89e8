"""The reconcile report as a node_exporter textfile (Prometheus text format 0.0.4).

Every series is a gauge named ``tfenv_reconcile_*``; a sharded run's series all
carry ``shard="K/N"`` so that the shards' files can sit side by side in the
textfile directory. Write the text with :func:`tfenv.reconcile.files.write_atomic`
(node_exporter must never read half a file).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tfenv.reconcile.report import AREAS, Report

PREFIX = "tfenv_reconcile_"

HELP = {
    "last_run_timestamp_seconds": "When the last reconcile run finished (unix time).",
    "last_run_duration_seconds": "How long the last reconcile run took.",
    "last_run_exit_code": (
        "The last run's exit code: 0 clean, 1 some host not checked, 2 drift, 3 bad input."
    ),
    "hosts": "Hosts the last run targeted.",
    "host_checked": "1 if the last run checked the host, 0 if it could not.",
    "drift_items": "Drift items per checked host and area in the last run.",
    "host_needs_a_person": "1 if the host has drift that needs a person (not fixed by --apply).",
}


def render_prom(report: Report, exit_code: int | None = None) -> str:
    """The textfile for ``report``; ``exit_code`` overrides the report's own (say
    when the run failed for a reason the report does not show)."""
    shard = {"shard": report.shard} if report.shard else {}
    hosts = sorted(report.hosts.values(), key=lambda h: h.name)
    finished = report.finished or report.started
    samples: dict[str, list[tuple[dict[str, str], float | int]]] = {
        "last_run_timestamp_seconds": [(shard, _unix_time(finished))],
        "last_run_duration_seconds": [(shard, round(report.duration_s, 3))],
        "last_run_exit_code": [(shard, report.exit_code if exit_code is None else exit_code)],
        "hosts": [(shard, len(hosts))],
        "host_checked": [({"host": h.name, **shard}, int(h.checked)) for h in hosts],
        "drift_items": [
            (
                {"host": h.name, "area": area, **shard},
                sum(1 for item in h.items if item.area == area and item.action != "rollout"),
            )
            for h in hosts
            if h.checked
            for area in AREAS
        ],
        "host_needs_a_person": [
            ({"host": h.name, **shard}, int(h.status == "needs-a-person")) for h in hosts
        ],
    }
    lines: list[str] = []
    for name, series in samples.items():
        metric = PREFIX + name
        lines.append(f"# HELP {metric} {_escape_help(HELP[name])}")
        lines.append(f"# TYPE {metric} gauge")
        lines.extend(f"{metric}{_labels(labels)} {_number(value)}" for labels, value in series)
    return "\n".join(lines) + "\n"


def _unix_time(iso: str) -> float | int:
    """ISO 8601 (``...Z`` or with an offset; naive means UTC) as unix time."""
    when = datetime.fromisoformat(iso)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp()
    return int(seconds) if seconds.is_integer() else seconds


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{escape_label(value)}"' for key, value in labels.items()) + "}"


def escape_label(value: str) -> str:
    """A label value as the exposition format wants it: backslash, double quote
    and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)
