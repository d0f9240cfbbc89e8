"""Example fleet: a real GPU fleet would look like this.

Groups are plain lists; per-host data rides along as (name, {data}) tuples.
Shared declared state lives in group_data/<group>.py (all.py, gpu.py,
canary.py). Check it without touching any host:

    tfenv validate inventories/gpu.py

Deploy:

    pyinfra inventories/gpu.py deploys/tf_node.py
"""

# Hosts that take a new image first during rollouts.
canary = [
    (
        "gpu-01.example.internal",
        {
            "containers": {
                "dev-alice": {
                    "image": "registry.example.internal/ml/tensorflow:2.18.0-gpu-jupyter",
                    "user": {"name": "alice", "uid": 2001, "gid": 2001},
                    "authorized_keys": [
                        # one OpenSSH public key per entry (the .pub file's line)
                        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3JzbiBzaG91bGQgYmUgYSByZWFsIGtleQ=="
                        " alice@laptop",
                    ],
                    # sshd runs as alice on 2222 inside; Jupyter's port is published
                    # on 127.0.0.1 only (reach it through an SSH tunnel).
                    "ports": [
                        {"container": 2222, "host": 2201},
                        {"container": 8888, "host": 8801},
                    ],
                    "gpus": [0, 1, 2, 3],
                    "shm_size": "16g",
                    "jupyter": {"port": 8888, "token_secret": "jupyter_token_alice"},
                    "checkpoints": {"nfs": "checkpoints", "path": "/checkpoints"},
                },
            },
        },
    ),
]

# The whole GPU fleet (canary hosts included).
gpu = [
    "gpu-01.example.internal",
    (
        "gpu-02.example.internal",
        {
            "containers": {
                "dev-bob": {
                    "image": "registry.example.internal/ml/tensorflow:2.17.0-gpu-jupyter",
                    "user": {"name": "bob", "uid": 2002, "gid": 2002},
                    "authorized_keys": [
                        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3JzbiBzaG91bGQgYmUgYSByZWFsIGtleQ=="
                        " bob@desk",
                    ],
                    "ports": [
                        {"container": 2222, "host": 2202},
                        {"container": 8888, "host": 8802},
                    ],
                    "gpus": "all",
                    "shm_size": "32g",
                    "ulimits": {"memlock": {"soft": -1, "hard": -1}},
                    "env": {"TF_FORCE_GPU_ALLOW_GROWTH": "true"},
                    "jupyter": {"port": 8888, "token_secret": "jupyter_token_bob"},
                    "checkpoints": {"nfs": "checkpoints", "path": "/checkpoints"},
                    # bob's home lives on the export too, not only his checkpoints
                    "workspace": {"nfs": "checkpoints"},
                    # long trainings: wait up to an hour for a busy container
                    "replace": {"policy": "wait", "timeout": 3600, "idle_minutes": 60},
                },
            },
        },
    ),
    "gpu-03.example.internal",
]
