"""Drift of a declared container against a REAL `docker inspect` (captured from a
lab host after tf_node created it: tests/fixtures/docker_inspect/dev.json).

No drift for the spec that created it; each single change is reported as
exactly that field, with both values (secrets: never the values).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tfenv.containers.desired import SECRETS_LABEL, desired_container
from tfenv.containers.drift import drift
from tfenv.facts.tf_node import reduce_inspect
from tfenv.model.spec import Container, NfsMount

INSPECT = json.loads(
    (Path(__file__).parent / "fixtures" / "docker_inspect" / "dev.json").read_text()
)[0]
OBSERVED = reduce_inspect(INSPECT)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3JzbiBzaG91bGQgYmUgYSByZWFsIGtleQ== t@test"
# What group_data/lab.py declared when the fixture was captured.
LAB_DEV = {
    "image": "registry.lab.test:5000/tfenv/tensorflow:2.17.1-lab1",
    "user": {"name": "researcher", "uid": 1000, "gid": 1000},
    "authorized_keys": [KEY],
    "ports": [{"container": 22, "host": 2222}, {"container": 8888, "host": 8888}],
    "shm_size": "1g",
    "gpus": "all",
    "jupyter": {"port": 8888, "token_secret": "jupyter_token_dev"},
    "checkpoints": {"nfs": "checkpoints", "path": "/checkpoints"},
}
NFS = {"checkpoints": NfsMount(server="nfs.lab.test", export="/export/checkpoints",
                               mount_point="/mnt/checkpoints")}  # fmt: skip


def desired(**changes):
    image = changes.pop("pinned", INSPECT["Config"]["Image"])
    container = Container.model_validate({**LAB_DEV, **changes})
    made = desired_container("dev", container, image, NFS, {"jupyter_token_dev": "seal"})
    # The seal comes from the token's value, which the test does not have: take the
    # running container's, as the deploy would compute it from the same value.
    return dataclasses.replace(made, secrets_digest=OBSERVED.labels[SECRETS_LABEL])


def test_the_spec_that_created_it_has_no_drift() -> None:
    assert drift(desired(), OBSERVED) == []


@pytest.mark.parametrize(
    ("changes", "field", "declared", "running"),
    [
        ({"ports": [{"container": 22, "host": 2222}, {"container": 8888, "host": 8889}]},
         "ports", "8888/tcp:0.0.0.0:8889", "8888/tcp:0.0.0.0:8888"),
        ({"gpus": [1]}, "gpus", "devices 1", "all"),
        ({"gpus": 1}, "gpus", "count 1", "all"),
        ({"env": {"EXPERIMENT": "lr-0.1"}}, "env: EXPERIMENT", "EXPERIMENT=lr-0.1",
         "EXPERIMENT=(unset)"),
        ({"checkpoints": {"nfs": "checkpoints", "path": "/ckpt"}}, "mounts",
         "/mnt/checkpoints/dev:/ckpt:False", "/mnt/checkpoints/dev:/checkpoints:False"),
        ({"shm_size": "2g"}, "shm_size", "2147483648", "1073741824"),
        ({"restart": "always"}, "restart", "always", "unless-stopped"),
        ({"labels": {"team": "vision"}}, "labels: team", "team=vision", "team=(unset)"),
        ({"ulimits": {"memlock": {"soft": -1, "hard": -1}}}, "ulimits", "[memlock:-1:-1]",
         "[]"),
    ],
)  # fmt: skip
def test_one_change_is_reported_as_that_field(changes, field, declared, running) -> None:
    found = drift(desired(**changes), OBSERVED)
    fields = [d.field for d in found]
    assert field in fields, found
    match = found[fields.index(field)]
    assert declared in match.declared and running in match.observed, match


def test_a_moved_mount_is_a_mounts_difference() -> None:
    found = drift(desired(checkpoints={"nfs": "checkpoints", "path": "/ckpt"}), OBSERVED)
    assert [d.field for d in found] == ["mounts"]


def test_a_new_digest_is_an_image_difference_only() -> None:
    new = "registry.lab.test:5000/tfenv/tensorflow@sha256:" + "4" * 64
    found = drift(desired(pinned=new), OBSERVED)
    assert [d.field for d in found] == ["image"]
    assert found[0].declared == new and found[0].observed == INSPECT["Config"]["Image"]


def test_a_new_secret_value_never_shows_a_value() -> None:
    changed = dataclasses.replace(desired(), secrets_digest="0" * 32)
    assert [str(d) for d in drift(changed, OBSERVED)] == [
        "secrets (declared a new value, running the previous value)"
    ]


def test_a_variable_removed_from_the_data_is_drift() -> None:
    with_var = dataclasses.replace(
        OBSERVED,
        env=[*OBSERVED.env, "EXPERIMENT=old"],
        labels={**OBSERVED.labels,
                "tfenv.env-names": OBSERVED.labels["tfenv.env-names"] + ",EXPERIMENT"},
    )  # fmt: skip
    assert [str(d) for d in drift(desired(), with_var)] == [
        "env: EXPERIMENT (declared {EXPERIMENT=(unset)}, running {EXPERIMENT=old})"
    ]


def test_a_variable_the_image_sets_is_not_ours_to_compare() -> None:
    assert any(e.startswith("PATH=") for e in OBSERVED.env)  # from the image
    assert drift(desired(), OBSERVED) == []
