"""Declared state of the `gpu` group: every host has 8 GPUs."""

gpu_count = 8
