"""The container option table: one row per option tfenv sets on a container.

Modelled on community.docker's ``docker_container`` option list. Each row owns,
for one declared field:

- ``declared``: its value from the :class:`DesiredContainer`, in a comparable form;
- ``arguments``: its ``docker run`` arguments (every user value quoted);
- ``inspect``: how it is read from one ``docker inspect`` entry (what the
  TfNode fact keeps, JSON-able);
- ``observed``: how that reading is put in the declared value's form for the
  comparison (by default, as read).

:func:`run_arguments`, the fact's reduction (:func:`read_options`) and the drift
table (:mod:`tfenv.containers.drift`) all come from :data:`OPTIONS`: adding an
option is adding a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyinfra.api import QuoteString

from tfenv.containers.desired import DEFAULT_SHM, DesiredContainer
from tfenv.layout import ENV_NAMES_LABEL, LABEL_NAMES_LABEL, SECRETS_LABEL
from tfenv.model.gpus import describe_device_requests

if TYPE_CHECKING:
    from tfenv.facts.tf_node import ObservedContainer

Entry = dict[str, Any]


def _config(entry: Entry) -> dict[str, Any]:
    return entry.get("Config") or {}


def _host(entry: Entry) -> dict[str, Any]:
    return entry.get("HostConfig") or {}


def _recorded(observed: ObservedContainer, label: str) -> set[str]:
    """Names tfenv recorded in a label when it created the container."""
    return {name for name in observed.labels.get(label, "").split(",") if name}


def _as_read(field: str) -> Callable[[ObservedContainer, DesiredContainer], object]:
    return lambda o, d: o.options.get(field)


@dataclass(frozen=True)
class Option:
    field: str
    declared: Callable[[DesiredContainer], object]
    arguments: Callable[[DesiredContainer], list[object]]
    inspect: Callable[[Entry], object]
    observed: Callable[[ObservedContainer, DesiredContainer], object] | None = None
    secret: bool = False  # show "changed", never the values
    hide_values: bool = False  # name the keys that differ, never their values

    def observed_value(self, o: ObservedContainer, d: DesiredContainer) -> object:
        return (self.observed or _as_read(self.field))(o, d)


# -- env and labels: partly the image's, so only the names tfenv set count ----


def _env_read(entry: Entry) -> dict[str, str]:
    return dict(e.split("=", 1) for e in (_config(entry).get("Env") or []) if "=" in e)


def _env_observed(o: ObservedContainer, d: DesiredContainer) -> dict[str, str]:
    names = set(dict(d.env)) | _recorded(o, ENV_NAMES_LABEL)
    values = o.options.get("env") or {}
    return {name: values[name] for name in sorted(names) if name in values}


def _labels_arguments(d: DesiredContainer) -> list[object]:
    args: list[object] = []
    for key, value in sorted({**dict(d.labels), **d.tfenv_labels}.items()):
        args += ["--label", QuoteString(f"{key}={value}")]
    return args


def _labels_observed(o: ObservedContainer, d: DesiredContainer) -> dict[str, str]:
    names = set(dict(d.labels)) | _recorded(o, LABEL_NAMES_LABEL)
    return {name: o.labels[name] for name in sorted(names) if name in o.labels}


# -- the others ---------------------------------------------------------------


def _ports_arguments(d: DesiredContainer) -> list[object]:
    args: list[object] = []
    for port in d.ports:
        number, protocol = port.container.split("/")
        args += ["--publish", QuoteString(f"{port.address}:{port.host}:{number}/{protocol}")]
    return args


def _ports_read(entry: Entry) -> list[list[str]]:
    return sorted(
        [port, b.get("HostIp", ""), b.get("HostPort", "")]
        for port, bindings in (_host(entry).get("PortBindings") or {}).items()
        for b in bindings or []
    )


def _mounts_arguments(d: DesiredContainer) -> list[object]:
    args: list[object] = []
    for mount in d.mounts:
        spec = f"type=bind,source={mount.source},target={mount.target}"
        args += ["--mount", QuoteString(spec + (",readonly" if mount.readonly else ""))]
    return args


def _mounts_read(entry: Entry) -> list[list[object]]:
    return sorted(
        [m.get("Source", ""), m.get("Target", ""), bool(m.get("ReadOnly"))]
        for m in _host(entry).get("Mounts") or []
    )


def _capabilities(names: object) -> list[str]:
    """Docker shows ``NET_ADMIN`` as ``CAP_NET_ADMIN`` from 20.10 on: one form."""
    return sorted({str(n).upper().removeprefix("CAP_") for n in names or []})  # type: ignore[attr-defined]


def _security_opt(options: object) -> list[str]:
    """``no-new-privileges`` and ``no-new-privileges:true`` are the same option."""
    return sorted({str(o).removesuffix(":true") for o in options or []})  # type: ignore[attr-defined]


def _repeat(flag: str, values: tuple[str, ...]) -> list[object]:
    return [part for value in values for part in (flag, QuoteString(value))]


def _restart_read(entry: Entry) -> str:
    policy = _host(entry).get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name == "on-failure" and policy.get("MaximumRetryCount"):
        return f"on-failure:{policy['MaximumRetryCount']}"
    return name


def _healthcheck_arguments(d: DesiredContainer) -> list[object]:
    return [
        "--health-cmd", QuoteString(d.healthcheck[1]),
        "--health-interval", f"{d.health_interval}s", "--health-timeout", "5s",
        "--health-start-period", "30s", "--health-retries", "3",
    ]  # fmt: skip


def _health_interval_read(entry: Entry) -> int:
    """Seconds (Docker keeps nanoseconds; 0, its default of 30 s, when none was set)."""
    nanoseconds = (_config(entry).get("Healthcheck") or {}).get("Interval") or 30_000_000_000
    return int(nanoseconds) // 1_000_000_000


OPTIONS: tuple[Option, ...] = (
    # The image is docker run's last, positional argument (see run_arguments).
    Option("image", lambda d: d.image, lambda d: [], lambda e: _config(e).get("Image", "")),
    Option("user", lambda d: d.user, lambda d: ["--user", QuoteString(d.user)],
           lambda e: _config(e).get("User", "")),
    Option("env", lambda d: dict(d.env),
           lambda d: [p for k, v in d.env for p in ("--env", QuoteString(f"{k}={v}"))],
           _env_read, _env_observed, hide_values=True),
    Option("labels", lambda d: dict(d.labels), _labels_arguments,
           lambda e: dict(_config(e).get("Labels") or {}), _labels_observed),
    Option("ports", lambda d: sorted([p.container, p.address, p.host] for p in d.ports),
           _ports_arguments, _ports_read),
    Option("gpus", lambda d: d.gpus.describe(),
           lambda d: ["--gpus", QuoteString(g)] if (g := d.gpus.argument()) else [],
           lambda e: describe_device_requests(_host(e).get("DeviceRequests") or [])),
    Option("shm_size", lambda d: d.shm_size, lambda d: ["--shm-size", str(d.shm_size)],
           lambda e: int(_host(e).get("ShmSize") or DEFAULT_SHM)),
    Option("ulimits", lambda d: [list(u) for u in d.ulimits],
           lambda d: [p for n, s, h in d.ulimits for p in ("--ulimit", f"{n}={s}:{h}")],
           lambda e: sorted([u["Name"], u["Soft"], u["Hard"]]
                            for u in _host(e).get("Ulimits") or [])),
    Option("restart", lambda d: d.restart, lambda d: ["--restart", d.restart], _restart_read),
    Option("mounts", lambda d: sorted([m.source, m.target, m.readonly] for m in d.mounts),
           _mounts_arguments, _mounts_read),
    Option("tmpfs", lambda d: sorted(d.tmpfs), lambda d: _repeat("--tmpfs", d.tmpfs),
           lambda e: sorted(_host(e).get("Tmpfs") or {})),
    Option("read_only", lambda d: d.read_only, lambda d: ["--read-only"] if d.read_only else [],
           lambda e: bool(_host(e).get("ReadonlyRootfs"))),
    Option("cap_drop", lambda d: _capabilities(d.cap_drop),
           lambda d: _repeat("--cap-drop", d.cap_drop),
           lambda e: _capabilities(_host(e).get("CapDrop"))),
    Option("cap_add", lambda d: _capabilities(d.cap_add),
           lambda d: _repeat("--cap-add", d.cap_add),
           lambda e: _capabilities(_host(e).get("CapAdd"))),
    Option("security_opt", lambda d: _security_opt(d.security_opt),
           lambda d: _repeat("--security-opt", d.security_opt),
           lambda e: _security_opt(_host(e).get("SecurityOpt"))),
    Option("healthcheck", lambda d: list(d.healthcheck), _healthcheck_arguments,
           lambda e: list((_config(e).get("Healthcheck") or {}).get("Test") or [])),
    Option("health_interval", lambda d: d.health_interval, lambda d: [],  # with healthcheck's
           _health_interval_read),
    Option("secrets", lambda d: d.secrets_digest, lambda d: [],  # a label, set with the others
           lambda e: (_config(e).get("Labels") or {}).get(SECRETS_LABEL, ""), secret=True),
)  # fmt: skip


def read_options(entry: Entry) -> dict[str, object]:
    """Every option's reading from one ``docker inspect`` entry (the fact keeps these)."""
    return {option.field: option.inspect(entry) for option in OPTIONS}


def run_arguments(desired: DesiredContainer) -> list[object]:
    """``docker run`` arguments (after ``docker run -d``), each user value quoted."""
    args: list[object] = ["--name", QuoteString(desired.name)]
    for option in OPTIONS:
        args += option.arguments(desired)
    args.append(QuoteString(desired.image))
    return args
