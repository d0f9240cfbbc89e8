"""Lab test deploy: deploys/reconcile_timer.py with the ``reconcile:`` group data
taken from the JSON in $TFENV_TEST_TIMER (the lab's group data declares none)."""

import json
import os

from pyinfra import host

from tfenv.deploys.reconcile_timer import reconcile_timer, timer_spec

reconcile_timer(timer_spec(host.name, json.loads(os.environ["TFENV_TEST_TIMER"])))
