"""Group data ``reconcile:``: the nightly reconcile a control node runs (see
deploys/reconcile_timer.py). Validated like every other section: unknown keys
and values outside their grammar are errors naming the host and field."""

from __future__ import annotations

from pydantic import ValidationError

from tfenv.model.problems import Problem, SpecError
from tfenv.model.spec import PATH_COMPONENT, AbsPath, Strict, UnixName, matching

# systemd calendar expressions: "daily", "*-*-* 02:30:00", "Mon..Fri 03:00"
Calendar = matching(
    r"^[A-Za-z0-9*:,./~ -]{1,64}$",
    "a systemd calendar expression such as 'daily' or '*-*-* 02:30:00'",
)
Span = matching(r"^[0-9]{1,5}(s|min|h)?$", "a time span such as 900, 15min or 1h")
RelPy = matching(
    rf"^(?:{PATH_COMPONENT})(?:/(?:{PATH_COMPONENT}))*\.py$",
    "a relative path of letters, digits and ._@+- ending in .py, such as inventories/gpu.py",
)
Shard = matching(r"^[1-9][0-9]{0,3}/[1-9][0-9]{0,3}$", "K/N such as 2/4")


class ReconcileTimer(Strict):
    inventory: RelPy  # relative to workdir
    workdir: AbsPath  # the fleet's project on the control node (inventories/, group_data/)
    tfenv: AbsPath = "/opt/tfenv/bin/tfenv"  # the tfenv command on the control node
    schedule: Calendar = "*-*-* 02:30:00"
    randomized_delay: Span = "15min"
    report_dir: AbsPath = "/var/lib/tfenv-reconcile/reports"
    state_dir: AbsPath = "/var/lib/tfenv-reconcile/state"
    apply: bool = False
    user: UnixName = "tfenv-reconcile"
    shard: Shard | None = None


def load_timer(host: str, data: object) -> ReconcileTimer:
    """``host``'s ``reconcile:`` data, or a SpecError naming every bad field."""
    if data is None:
        raise SpecError([Problem(host, "reconcile", "a reconcile: section", "nothing")])
    try:
        return ReconcileTimer.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            Problem(host, "reconcile." + ".".join(str(p) for p in error["loc"]),
                    error["msg"].removeprefix("Value error, "), type(error.get("input")).__name__)
            for error in exc.errors()
        ) from None  # fmt: skip
