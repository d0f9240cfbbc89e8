"""tfenv rollout: canary rollouts of a new image across a fleet (see docs/rollout.md)."""
