"""Install the nightly ``tfenv reconcile`` on a control node.

    pyinfra inventories/control.py deploys/reconcile_timer.py

Driven by group data ``reconcile:`` (tfenv/model/reconcile_timer.py):
inventory, workdir, tfenv, schedule, randomized_delay, report_dir,
state_dir, apply, user, shard. See docs/reconcile.md.
"""

from tfenv.deploys.reconcile_timer import reconcile_timer_for_host

reconcile_timer_for_host()
