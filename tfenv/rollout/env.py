"""How tfenv rollout talks to the pyinfra runs it starts (no imports on purpose)."""

STEP_ENV = "TFENV_ROLLOUT_STEP"  # a JSON file: the phase, the container, each host's part
LOCK_HELD = "TFENV-ROLLOUT-LOCK-HELD"  # said (with the holder's JSON) when the lock is taken
