"""The lab: a fleet of host-like containers on this machine, reached over real SSH.

Nothing in the model, facts, operations or deploys knows the lab exists: it
is just another inventory (``inventories/lab.py``) plus the state file it
reads (``.lab/state.json``).
"""
