"""What a container asks of its host's GPUs, as one typed value.

Declared as ``"all"``, a count (``2``) or a list of indices (``[0, 1]``);
rendered as Docker's ``--gpus`` argument and read back from
``HostConfig.DeviceRequests``, both in the same words (:meth:`Gpus.describe`),
so the declared and the running value compare directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["none", "all", "count", "devices"]


@dataclass(frozen=True)
class Gpus:
    kind: Kind = "none"
    count: int = 0
    devices: tuple[int, ...] = ()

    @classmethod
    def parse(cls, value: object) -> Gpus:
        """From declared data; one clear error for anything else."""
        if isinstance(value, Gpus):
            return value
        if value is None:
            return NO_GPUS
        if value == "all":
            return cls("all")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return cls("count", count=value)
        if (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)
        ):
            if len(set(value)) != len(value):
                raise ValueError("GPU indices without repeats")
            return cls("devices", devices=tuple(value))
        raise ValueError("'all', a GPU count (1 or more) or a list of GPU indices such as [0, 1]")

    def argument(self) -> str | None:
        """Docker's ``--gpus`` value, or ``None`` for no GPUs."""
        if self.kind == "none":
            return None
        if self.kind == "all":
            return "all"
        if self.kind == "count":
            return str(self.count)
        return '"device=' + ",".join(str(i) for i in self.devices) + '"'

    def describe(self) -> str:
        if self.kind == "count":
            return f"count {self.count}"
        if self.kind == "devices":
            return "devices " + ",".join(str(i) for i in self.devices)
        return self.kind

    def visible(self, gpu_count: int | None) -> int | None:
        """How many GPUs a process inside sees (``None``: not known or none asked)."""
        if self.kind == "none":
            return None
        if self.kind == "all":
            return gpu_count
        return self.count if self.kind == "count" else len(self.devices)

    def highest_index(self) -> int | None:
        """The highest GPU index or count asked for, to check against the host's GPUs."""
        if self.kind == "count":
            return self.count - 1
        if self.kind == "devices":
            return max(self.devices)
        return None


NO_GPUS = Gpus()


def describe_device_requests(requests: Iterable[Mapping[str, Any]]) -> str:
    """``HostConfig.DeviceRequests`` of ``docker inspect`` in :meth:`Gpus.describe`'s words."""
    gpu = [r for r in requests if ["gpu"] in (r.get("Capabilities") or [])]
    if not gpu:
        return "none"
    request = gpu[0]
    if request.get("DeviceIDs"):
        return "devices " + ",".join(request["DeviceIDs"])
    return "all" if request.get("Count") == -1 else f"count {request.get('Count')}"
