"""Declared state of the `canary` group: hosts that take a new image first.

`tfenv rollout start` puts this group's hosts in its first wave(s). The group
needs no data of its own: its hosts keep their other groups' declared state.
"""
