"""Run by tfenv hotfix: start or finish a hotfix on one host (see
tfenv/deploys/hotfix.py). Not meant to be run by hand: use
tfenv hotfix start|finish HOST CONTAINER."""

from pyinfra import host

from tfenv.deploys.hotfix import hotfix_step
from tfenv.deploys.spec import host_spec

hotfix_step(host_spec(host))
