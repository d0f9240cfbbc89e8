"""Declared state of the `canary` group (hosts that take new images first)."""

gpu_count = 8
