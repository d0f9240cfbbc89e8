"""How tfenv reconcile talks to the pyinfra runs it starts: environment variables.

No imports on purpose: the CLI starts its pyinfra check before it imports
pyinfra itself (the two load in parallel; see :mod:`tfenv.reconcile.check`).
"""

OUT_ENV = "TFENV_RECONCILE_OUT"  # a JSON-lines file the run writes its results to
DEEP_ENV = "TFENV_RECONCILE_DEEP"  # "1": the run may exec inside containers (--deep)
SHARD_ENV = "TFENV_RECONCILE_SHARD"  # "K/N": the run targets only that shard's hosts
# A file descriptor the run reads "go" from before it connects to any host
# (anything else, or the pipe closing, stops it with no connection made).
GATE_ENV = "TFENV_RECONCILE_GATE"
PYINFRA_ARGS_ENV = "TFENV_PYINFRA_ARGS"  # extra pyinfra arguments, such as --debug
