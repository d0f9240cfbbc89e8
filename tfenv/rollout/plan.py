"""A rollout's plan: which hosts go in which wave. Pure.

``--waves 1,10%,30%,50%,100%``: each entry is how far the rollout has got
once that wave is done, as a number of hosts or a share of them (rounded up).
Every wave adds at least one host (never an empty wave); entries that add
nothing once every host is covered are dropped; the last entry must reach
every host. Hosts of the ``canary`` group go first, then the others by name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tfenv.model.spec import Container

DEFAULT_WAVES = "1,10%,30%,50%,100%"
WAVE_RE = re.compile(r"([1-9][0-9]{0,6})(%?)", re.ASCII)
DURATION_RE = re.compile(r"([0-9]{1,6})(s|m|h)?", re.ASCII)
CANARY_GROUP = "canary"


class PlanError(ValueError):
    """What makes a plan impossible (the message says what to change)."""


@dataclass(frozen=True)
class Target:
    """How far a wave takes the rollout: ``count`` hosts, or ``share`` percent."""

    count: int | None = None
    share: int | None = None

    def reach(self, hosts: int) -> int:
        if self.share is not None:
            return math.ceil(hosts * self.share / 100)
        return min(self.count or 0, hosts)

    def __str__(self) -> str:
        return f"{self.share}%" if self.share is not None else str(self.count)


def parse_waves(text: str) -> list[Target]:
    targets = []
    for part in text.split(","):
        match = WAVE_RE.fullmatch(part.strip())
        if not match or (match.group(2) and int(match.group(1)) > 100):
            raise PlanError(
                f"--waves {text!r}: {part.strip()!r} is not a number of hosts (1, 2, ...) or a "
                "share (1% to 100%); for example 1,10%,30%,50%,100%"
            )
        number = int(match.group(1))
        targets.append(Target(share=number) if match.group(2) else Target(count=number))
    return targets


def parse_duration(text: str) -> int:
    """``--bake``: seconds from ``0``, ``90``, ``90s``, ``15m``, ``2h``."""
    match = DURATION_RE.fullmatch(text.strip())
    if not match:
        raise PlanError(f"--bake {text!r}: expected a duration such as 0, 90s, 15m or 2h")
    return int(match.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]


def order_hosts(hosts: dict[str, tuple[str, ...]]) -> list[str]:
    """Host names (name -> its groups) in rollout order: canary hosts first."""
    return sorted(hosts, key=lambda name: (CANARY_GROUP not in hosts[name], name))


def plan_waves(ordered: list[str], targets: list[Target]) -> list[list[str]]:
    """``ordered`` hosts cut into waves; every host exactly once."""
    if not ordered:
        raise PlanError("no host to roll out to")
    total, done, waves = len(ordered), 0, []
    for target in targets:
        if done == total:
            break
        reach = min(max(target.reach(total), done + 1), total)
        waves.append(ordered[done:reach])
        done = reach
    if done != total:
        last = targets[-1] if targets else "nothing"
        raise PlanError(
            f"--waves ends at {last}, which covers {done} of {total} hosts: end the list "
            "with 100% (or the number of hosts)"
        )
    flat = [host for wave in waves for host in wave]
    if sorted(flat) != sorted(ordered) or len(set(flat)) != len(flat):  # never: checked anyway
        raise PlanError("the waves do not cover every host exactly once")
    return waves


def reference_model(container: Container) -> str | None:
    """Where the default probe finds the reference SavedModel inside the container."""
    if container.canary.model:
        return container.canary.model
    if container.checkpoints:
        return f"{container.checkpoints.path.rstrip('/')}/tfenv-canary/reference-model"
    return None


def measures(container: Container) -> bool:
    """Whether the container has metric gates (a probe command, or a reference model)."""
    return bool(container.canary.probe) or reference_model(container) is not None
