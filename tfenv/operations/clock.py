"""A host whose clock is off stops before anything changes.

A clock a day off breaks what a deploy relies on in ways that look like
something else: apt refuses Release files "not valid yet" (or expired), TLS
to the registry fails on certificates "not yet valid", and logs and reports
from that host sort wrong. The skew comes from the GpuHost fact (its
``date`` is read in the same round trip as everything else), so the check
costs no extra command.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from tfenv.facts.gpu import GpuHostState, gpu_host
from tfenv.operations.failure import fail_host

MAX_CLOCK_SKEW = 300  # seconds; NTP keeps hosts within milliseconds


def describe_skew(seconds: int) -> str:
    """``86400`` -> ``1 day ahead of``; ``-5400`` -> ``1 h 30 min behind``.
    Rounded as a person would say it: to the hour past a day, to the minute past
    an hour (the reading itself is a second or so late)."""
    size = abs(seconds)
    if size >= 86400:
        size = round(size / 3600) * 3600
    elif size >= 3600:
        size = round(size / 60) * 60
    days, rest = divmod(size, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    parts += [f"{secs} s"] if secs and not days else []
    return f"{' '.join(parts) or '0 s'} {'ahead of' if seconds > 0 else 'behind'}"


@operation()
def clock_in_sync(max_skew: int = MAX_CLOCK_SKEW, observed: GpuHostState | None = None):
    """
    Fail the host, before any change, when its clock is off by more than ``max_skew``.

    + max_skew: seconds the host's clock may differ from this machine's
    + observed: the host's GpuHostState, if already read

    **Example:**

    .. code:: python

        clock_in_sync(name="Clock in sync")
    """
    state = observed or gpu_host(host)
    if state.clock_skew is None:
        yield fail_host(
            "could not read its clock (date -u +%s gave no number); nothing was changed. "
            "Check the host, then run again"
        )
    elif abs(state.clock_skew) > max_skew:
        yield fail_host(
            f"its clock is {describe_skew(state.clock_skew)} this machine's "
            f"({state.clock_skew:+d} s): apt, TLS certificates and logs go wrong on a skewed "
            "clock, so nothing was changed. Fix its time sync (timedatectl status; chronyc "
            "tracking), or this machine's if every host says so, then run again"
        )
    else:
        host.noop(f"clock within {max_skew} s of this machine's ({state.clock_skew:+d} s)")
