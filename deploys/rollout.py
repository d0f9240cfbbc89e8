"""Run by tfenv rollout: one step of a rollout (observe, replace, check, lock) on the
hosts it names (see tfenv/deploys/rollout.py). Not meant to be run by hand: use
tfenv rollout start|resume|promote|rollback|abort|status."""

from pyinfra import host

from tfenv.deploys.rollout import rollout_step
from tfenv.deploys.spec import host_spec

rollout_step(host_spec(host))
