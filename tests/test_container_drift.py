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
from inspect_oracle import inspect_after_run, rendered
from pyinfra.api import StringCommand

from tfenv.containers.desired import DesiredContainer, desired_container
from tfenv.containers.drift import Drift, drift
from tfenv.containers.options import OPTIONS, run_arguments
from tfenv.facts.tf_node import ObservedContainer, reduce_inspect
from tfenv.layout import SECRETS_LABEL
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
    "ports": [{"container": 2222, "host": 2222}, {"container": 8888, "host": 8888}],
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


IMAGE = INSPECT["Config"]["Image"]
NEW_IMAGE = "registry.lab.test:5000/tfenv/tensorflow@sha256:" + "4" * 64


def mounts_shown(checkpoints: str) -> str:
    """The captured container's mounts as a drift line shows them (sorted by source),
    with the checkpoints directory mounted on ``checkpoints``."""
    return "[" + ", ".join([
        "/etc/tfenv/containers/dev/authorized_keys:/etc/tfenv/authorized_keys:True",
        "/etc/tfenv/containers/dev/group:/etc/group:True",
        "/etc/tfenv/containers/dev/passwd:/etc/passwd:True",
        "/etc/tfenv/secrets/dev/jupyter_token_dev:/run/secrets/jupyter_token_dev:True",
        f"/mnt/checkpoints/dev:{checkpoints}:False",
        "/var/lib/tfenv/containers/dev/home:/home/researcher:False",
        "/var/lib/tfenv/containers/dev/ssh-host-keys:/etc/tfenv/ssh-host-keys:False",
    ]) + "]"  # fmt: skip


# One change per row of the option table, each through the model where a
# declared field drives the row, else on the resolved container itself:
# field -> (model changes, resolved-container changes, declared, running), the
# last two exactly as the drift line shows them.
CHANGES: dict[str, tuple[dict, dict, str, str]] = {
    "image": ({}, {"image": NEW_IMAGE}, NEW_IMAGE, IMAGE),
    "user": ({"user": {"name": "researcher", "uid": 1001, "gid": 1000}}, {}, "1001:1000",
             "1000:1000"),
    "env: EXPERIMENT": ({"env": {"EXPERIMENT": "lr-0.1"}}, {}, "{EXPERIMENT=(a new value)}",
                        "{EXPERIMENT=(unset)}"),
    "labels: team": ({"labels": {"team": "vision"}}, {}, "{team=vision}", "{team=(unset)}"),
    "ports": ({"ports": [{"container": 2222, "host": 2222}, {"container": 8888, "host": 8889}]},
              {}, "[2222/tcp:0.0.0.0:2222, 8888/tcp:127.0.0.1:8889]",
              "[2222/tcp:0.0.0.0:2222, 8888/tcp:127.0.0.1:8888]"),
    "gpus": ({"gpus": [1]}, {}, "devices 1", "all"),
    "shm_size": ({"shm_size": "2g"}, {}, "2147483648", "1073741824"),
    "ulimits": ({"ulimits": {"memlock": {"soft": -1, "hard": -1}}}, {}, "[memlock:-1:-1]", "[]"),
    "restart": ({"restart": "always"}, {}, "always", "unless-stopped"),
    "mounts": ({"checkpoints": {"nfs": "checkpoints", "path": "/ckpt"}}, {},
               mounts_shown("/ckpt"), mounts_shown("/checkpoints")),
    "tmpfs": ({}, {"tmpfs": ("/tmp",)}, "[/tmp]", "[]"),
    "read_only": ({}, {"read_only": True}, "True", "False"),
    "cap_drop": ({}, {"cap_drop": ()}, "[]", "[ALL]"),
    "cap_add": ({"cap_add": ["sys_ptrace"]}, {}, "[SYS_PTRACE]", "[]"),
    "security_opt": ({}, {"security_opt": ()}, "[]", "[no-new-privileges]"),
    "healthcheck": ({}, {"healthcheck": ("CMD-SHELL", "true")}, "[CMD-SHELL, true]",
                    "[CMD-SHELL, bash -c '</dev/tcp/127.0.0.1/2222' || exit 1]"),
    "health_interval": ({"health_interval": 2}, {}, "2", "10"),
    "secrets": ({}, {"secrets_digest": "0" * 32}, "a new value", "the previous value"),
}  # fmt: skip


def test_every_option_row_has_a_change_case() -> None:
    rows = [option.field for option in OPTIONS]
    assert [field.split(":")[0] for field in CHANGES] == rows


@pytest.mark.parametrize("option", OPTIONS, ids=[option.field for option in OPTIONS])
def test_each_row_reads_the_real_inspect_as_declared(option) -> None:
    """Unchanged, every row's declared value equals its reading of the real inspect."""
    assert option.declared(desired()) == option.observed_value(OBSERVED, desired())


@pytest.mark.parametrize(("field", "case"), CHANGES.items(), ids=list(CHANGES))
def test_one_change_is_reported_as_exactly_that_field(field, case) -> None:
    model_changes, resolved_changes, declared, running = case
    changed = dataclasses.replace(desired(**model_changes), **resolved_changes)
    assert drift(changed, OBSERVED) == [Drift(field, declared, running)]


def test_run_arguments_come_from_every_row() -> None:
    """Each row renders its own docker run arguments (or, for the image and the
    secrets label, its value lands where docker run takes it)."""
    changed = dataclasses.replace(desired(cap_add=["SYS_PTRACE"]), read_only=True, tmpfs=("/tmp",))
    rendered = StringCommand(*run_arguments(changed)).get_raw_value()
    for flag in ("--user", "--env", "--label", "--publish", "--gpus", "--shm-size", "--restart",
                 "--mount", "--tmpfs", "--read-only", "--cap-drop", "--cap-add", "--security-opt",
                 "--health-cmd"):  # fmt: skip
        assert f" {flag} " in f" {rendered} ", flag
    assert rendered.endswith(changed.image)
    assert f"tfenv.secrets={changed.secrets_digest}" in rendered


def running_with_env(name: str, value: str):
    """The captured container, as if tfenv had also set ``name=value`` on it."""
    return dataclasses.replace(
        OBSERVED,
        options={**OBSERVED.options, "env": {**OBSERVED.options["env"], name: value}},
        labels={**OBSERVED.labels,
                "tfenv.env-names": OBSERVED.labels["tfenv.env-names"] + "," + name},
    )  # fmt: skip


def test_a_variable_removed_from_the_data_is_drift() -> None:
    with_var = running_with_env("EXPERIMENT", "old")
    assert [str(d) for d in drift(desired(), with_var)] == [
        "env: EXPERIMENT (declared {EXPERIMENT=(unset)}, running {EXPERIMENT=(another value)})"
    ]


def test_an_env_value_never_shows_in_a_drift_line() -> None:
    pasted = "hunter2-pasted-into-env"
    running = running_with_env("API_KEY", "old-" + pasted)
    (found,) = drift(desired(env={"API_KEY": pasted}), running)
    assert found.field == "env: API_KEY" and pasted not in str(found)
    assert str(found) == (
        "env: API_KEY (declared {API_KEY=(a new value)}, running {API_KEY=(another value)})"
    )


def test_a_label_removed_from_the_data_is_drift() -> None:
    with_label = dataclasses.replace(
        OBSERVED,
        labels={**OBSERVED.labels, "team": "vision", "tfenv.label-names": "team"},
    )
    assert [str(d) for d in drift(desired(), with_label)] == [
        "labels: team (declared {team=(unset)}, running {team=vision})"
    ]


# What the captured image itself sets: the env and labels tfenv did not record.
IMAGE_ENV = {
    name: value
    for name, value in (entry.split("=", 1) for entry in INSPECT["Config"]["Env"])
    if name not in OBSERVED.labels["tfenv.env-names"].split(",")
}
IMAGE_LABELS = {"org.opencontainers.image.version": "2.17.1-lab1", "tfenv.lab": "1",
                "tfenv.lab.base-hash": "10104b463651"}  # fmt: skip


def made_by(spec: DesiredContainer) -> ObservedContainer:
    """The container ``docker run`` makes from ``spec``'s rendered arguments, read back."""
    return reduce_inspect(inspect_after_run(rendered(spec), IMAGE_ENV, IMAGE_LABELS))


def test_the_oracle_reads_back_as_the_real_capture() -> None:
    """The oracle (tests/inspect_oracle.py) agrees with Docker itself on the spec that
    created the capture, so the round trips below stand for real runs."""
    assert IMAGE_ENV == {
        "PATH": "/opt/tf/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    made = made_by(desired())
    assert (made.name, made.labels, made.options) == ("dev", OBSERVED.labels, OBSERVED.options)


def test_a_label_removed_after_a_run_is_drift() -> None:
    """The label names tfenv records when it creates the container are what make a
    removed label drift: run with a label, then declare it gone."""
    running = made_by(desired(labels={"team": "vision", "tier": "gold"}))
    assert drift(desired(labels={"tier": "gold"}), running) == [
        Drift("labels: team", "{team=(unset)}", "{team=vision}")
    ]


def test_a_variable_removed_after_a_run_is_drift() -> None:
    running = made_by(desired(env={"EXPERIMENT": "lr-0.1", "SEED": "7"}))
    assert drift(desired(env={"SEED": "7"}), running) == [
        Drift("env: EXPERIMENT", "{EXPERIMENT=(unset)}", "{EXPERIMENT=(another value)}")
    ]


def test_a_variable_the_image_sets_is_not_ours_to_compare() -> None:
    assert "PATH" in OBSERVED.options["env"]  # from the image
    assert drift(desired(), OBSERVED) == []


def test_the_captured_container_runs_with_least_privilege() -> None:
    assert INSPECT["Config"]["User"] == "1000:1000"
    assert INSPECT["HostConfig"]["CapDrop"] == ["ALL"]
    assert INSPECT["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
