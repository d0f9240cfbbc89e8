"""Settings shared by every host of every inventory (the `all` group).

Keep fleet-specific declared state in the group files (gpu.py for the
example fleet, lab.py for the local lab): pyinfra replaces a key whole when a
more specific group or the inventory sets it (no deep merge).
"""

# SSH as a sudo-capable user with real host key checking.
ssh_user = "ops"
ssh_strict_host_key_checking = "yes"
_sudo = True
