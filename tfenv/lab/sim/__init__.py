"""Lab simulators for what these machines lack: an NVIDIA GPU stack and kernel NFS.

Everything here is a SIMULATOR and lives only in the lab. Deploys run their
real code paths against it (NVIDIA's package names and versions from a signed
apt repository, ``nvidia-smi``, ``nvidia-ctk``, ``docker run --gpus``,
reboots, systemd NFS mount units); the lab's data only overrides repository
URLs and keys. See ``SIMULATORS.md`` next to this file for what is faithful
and what is not.
"""

from importlib import resources


def sim_file(name: str) -> str:
    """The text of a simulator file shipped in ``tfenv/lab/sim/files/``."""
    return resources.files("tfenv.lab.sim").joinpath(f"files/{name}").read_text()
