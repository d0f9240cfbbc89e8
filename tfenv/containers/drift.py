"""The declared container against the running one, option by option.

Modelled on community.docker's ``docker_container``: one row per option, each
saying how the declared value is read and how ``docker inspect`` shows it
(normalised to the same form). A difference is data, :class:`Drift`, so the
operation, ``--dry`` and reports all say exactly which field changed.

Environment variables and labels come partly from the image, so only the
names tfenv set (recorded in a label on the container) are compared: a
variable removed from the data is drift too. Secrets are compared by their
seals' digest, never by value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tfenv.containers.desired import (
    DEFAULT_SHM,
    ENV_NAMES_LABEL,
    HEALTH_TEST,
    LABEL_NAMES_LABEL,
    SECRETS_LABEL,
    DesiredContainer,
)
from tfenv.facts.tf_node import ObservedContainer


@dataclass(frozen=True)
class Drift:
    field: str
    declared: str
    observed: str

    def __str__(self) -> str:
        return f"{self.field} (declared {self.declared}, running {self.observed})"


def _recorded(observed: ObservedContainer, label: str) -> set[str]:
    return {name for name in observed.labels.get(label, "").split(",") if name}


def _env_declared(d: DesiredContainer) -> dict[str, str]:
    return dict(d.env)


def _env_observed(o: ObservedContainer, d: DesiredContainer) -> dict[str, str]:
    names = set(dict(d.env)) | _recorded(o, ENV_NAMES_LABEL)
    values = dict(entry.split("=", 1) for entry in o.env if "=" in entry)
    return {name: values[name] for name in sorted(names) if name in values}


def _labels_observed(o: ObservedContainer, d: DesiredContainer) -> dict[str, str]:
    names = set(dict(d.labels)) | _recorded(o, LABEL_NAMES_LABEL)
    return {name: o.labels[name] for name in sorted(names) if name in o.labels}


def _ports_observed(o: ObservedContainer, _d: DesiredContainer) -> list[tuple[str, str, str]]:
    return sorted(
        (port, b.get("HostIp", ""), b.get("HostPort", ""))
        for port, bindings in o.ports.items()
        for b in bindings
    )


def _gpus_declared(d: DesiredContainer) -> str:
    if d.gpus is None:
        return "none"
    if d.gpus == "all":
        return "all"
    if isinstance(d.gpus, int):
        return f"count {d.gpus}"
    return "devices " + ",".join(str(i) for i in d.gpus)  # type: ignore[union-attr]


def _gpus_observed(o: ObservedContainer, _d: DesiredContainer) -> str:
    gpu = [r for r in o.device_requests if ["gpu"] in r.get("Capabilities", [])]
    if not gpu:
        return "none"
    request = gpu[0]
    if request.get("DeviceIDs"):
        return "devices " + ",".join(request["DeviceIDs"])
    return "all" if request.get("Count") == -1 else f"count {request.get('Count')}"


def _mounts_observed(o: ObservedContainer, _d: DesiredContainer) -> list[tuple[str, str, bool]]:
    return sorted((m["Source"], m["Target"], bool(m.get("ReadOnly"))) for m in o.mounts)


@dataclass(frozen=True)
class Option:
    """One comparable option: its declared and its observed value, in one form."""

    field: str
    declared: Callable[[DesiredContainer], object]
    observed: Callable[[ObservedContainer, DesiredContainer], object]
    secret: bool = False  # show "changed", never the values


OPTIONS: tuple[Option, ...] = (
    Option("image", lambda d: d.image, lambda o, d: o.image),
    Option("env", _env_declared, _env_observed),
    Option("labels", lambda d: dict(d.labels), _labels_observed),
    Option("ports", lambda d: sorted((p.container, p.address, p.host) for p in d.ports),
           _ports_observed),
    Option("gpus", _gpus_declared, _gpus_observed),
    Option("shm_size", lambda d: d.shm_size, lambda o, d: o.shm_size or DEFAULT_SHM),
    Option("ulimits", lambda d: list(d.ulimits),
           lambda o, d: sorted((u["Name"], u["Soft"], u["Hard"]) for u in o.ulimits)),
    Option("restart", lambda d: d.restart, lambda o, d: o.restart),
    Option("mounts", lambda d: sorted((m.source, m.target, m.readonly) for m in d.mounts),
           _mounts_observed),
    Option("healthcheck", lambda d: HEALTH_TEST,
           lambda o, d: (o.healthcheck or {}).get("Test")),
    Option("secrets", lambda d: d.secrets_digest,
           lambda o, d: o.labels.get(SECRETS_LABEL, ""), secret=True),
)  # fmt: skip


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) if isinstance(v, list | tuple) else str(v)
                               for v in value) + "]"  # fmt: skip
    if isinstance(value, tuple):
        return ":".join(str(v) for v in value)
    return str(value)


def drift(desired: DesiredContainer, observed: ObservedContainer) -> list[Drift]:
    """Every option whose running value differs from the declared one, in table order."""
    found = []
    for option in OPTIONS:
        declared, current = option.declared(desired), option.observed(observed, desired)
        if declared == current:
            continue
        if option.secret:
            found.append(Drift(option.field, "a new value", "the previous value"))
        elif isinstance(declared, dict) and isinstance(current, dict):
            keys = sorted(k for k in set(declared) | set(current)
                          if declared.get(k) != current.get(k))  # fmt: skip
            found.append(Drift(
                f"{option.field}: {', '.join(keys)}",
                _show({k: declared.get(k, "(unset)") for k in keys}),
                _show({k: current.get(k, "(unset)") for k in keys}),
            ))  # fmt: skip
        else:
            found.append(Drift(option.field, _show(declared), _show(current)))
    return found
