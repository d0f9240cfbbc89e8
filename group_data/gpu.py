"""Declared state of the example GPU fleet (the `gpu` group, canary hosts included)."""

# Every host of this fleet has 8 GPUs.
gpu_count = 8

# NVIDIA driver: the branch and the exact version in it.
# kernel_modules: "open" (Turing and newer) or "proprietary".
# reboot: "if-needed" lets tfenv reboot a host after a driver change;
# "never" marks it pending and keeps GPU containers off it.
nvidia_driver = {
    "branch": "550",
    "version": "550.127.05",
    "kernel_modules": "open",
    "reboot": "if-needed",
}

docker_engine = {"source": "docker", "version": "27.3.1"}

container_toolkit = {"version": "1.17.3"}

# Leave out to use NVIDIA's and Docker's own repositories; set url and key to
# use a mirror (air-gapped sites). key: an https URL or a local file path.
# apt_repositories = {
#     "cuda": {"url": "https://mirror.example.internal/cuda/",
#              "key": "keys/cuda-archive-keyring.gpg"},
# }

# Digests of every image a container may use (written by `tfenv lock`).
image_lock = "locks/gpu.lock.yaml"

# A small image from the lock: the deploy proves each host by running
# `docker run --rm --gpus all IMAGE nvidia-smi -L` (any image will do; the
# toolkit mounts nvidia-smi in).
gpu_check_image = "registry.example.internal/ml/cuda-base:12.4.1"

# Secrets are references, never values: an environment variable on the
# machine you deploy from ({"env": "NAME"}) or a file only you can read
# ({"file": "path"}). generate=True lets `tfenv secrets init` create a random
# token file (Jupyter tokens); never use it for passwords that exist elsewhere.
secrets = {
    "jupyter_token_alice": {"file": "secrets/jupyter_token_alice", "generate": True},
    "jupyter_token_bob": {"file": "secrets/jupyter_token_bob", "generate": True},
}

# A private registry that needs a login would be declared like this:
# registries = {
#     "registry.example.internal": {
#         "username": "robot-tfenv",
#         "password_secret": "registry_password",  # plus "registry_password":
#     },                                           #   {"env": "TFENV_REGISTRY_PASSWORD"}
# }                                                # in secrets above

nfs_mounts = {
    "checkpoints": {
        "server": "nfs.example.internal",
        "export": "/export/checkpoints",
        "mount_point": "/mnt/checkpoints",
        "options": ["hard", "nfsvers=4.1", "timeo=600"],
    },
}
