"""One step of a rollout on the hosts of one pyinfra run (``deploys/rollout.py``).

``tfenv rollout`` writes the step to a JSON file named by ``TFENV_ROLLOUT_STEP``
and reads each host's result line from ``TFENV_RECONCILE_OUT``
(:func:`tfenv.drift.write_line`). Phases:

- ``observe`` (``--dry``): the container's image, rollout labels, what keeps
  it in use, and (``metrics``) the canary probe on it: the baseline;
- ``replace`` (``-y``): the declared container with the step's image and
  rollout labels, through the container operation (busy guard, pull before
  stop, the previous container back if the new one fails to start);
- ``check`` (``--dry``): the gates' readings on the new container;
- ``lock`` / ``unlock`` (``-y``): the rollout's lock file on its first canary host.
"""

from __future__ import annotations

import dataclasses
import json
import os

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from tfenv import layout
from tfenv.deploys.driver_rollout import driver_step
from tfenv.deploys.spec import pinned_image
from tfenv.deploys.tf_node import declared_container
from tfenv.drift import write_line
from tfenv.facts.canary import CanaryCheck, RolloutLocks
from tfenv.facts.tf_node import tf_node
from tfenv.model.spec import Container, NodeSpec
from tfenv.operations.tf_container import pending_replacements, tf_container
from tfenv.rollout.env import LOCK_HELD, STEP_ENV
from tfenv.rollout.plan import measures, reference_model


def load_step() -> dict:
    with open(os.environ[STEP_ENV], encoding="utf-8") as handle:
        return json.load(handle)


def _read(spec: NodeSpec, name: str, container: Container, mine: dict) -> None:
    node = tf_node(host) if mine.get("node") else None
    check = host.get_fact(
        CanaryCheck,
        container=name,
        health=bool(mine.get("health")),
        metrics=bool(mine.get("metrics")) and measures(container),
        checkpoints=container.checkpoints.path if container.checkpoints else None,
        model=reference_model(container),
        inferences=container.canary.inferences,
        probe=container.canary.probe,
        timeout=container.canary.health_timeout,
    )
    observed = node.containers.get(name) if node else None
    lock = spec.image_lock
    if lock is None:  # never: the model requires a lock where containers are declared
        write_line({"host": host.name, "error": "no image lock declared"})
        return
    write_line({
        "host": host.name,
        "check": check,
        "busy": observed.busy if observed else [],
        "busy_checked": observed.busy_checked if observed else False,
        "declared": pinned_image(spec, container.image),
        "declared_image": container.image,
        "declared_ref": lock.effective(container.image),
        "lock": str(lock.path),
        "gpus": container.gpus.visible(spec.gpu_count),
        "jupyter": container.jupyter is not None,
        "measures": measures(container),
        "policy": container.replace.policy,
        "gates": container.canary.gates.model_dump(),
    })  # fmt: skip


@operation()
def rollout_lock(container: str, holder: dict, present: bool = True):
    """
    Hold (or release) the rollout lock of ``container`` on this host.

    + container: the container group the rollout moves
    + holder: the rollout's id, owner and start (JSON in the lock file)
    + present: hold it (fails the host if another rollout holds it), or release it

    **Example:**

    .. code:: python

        rollout_lock(name="Rollout lock", container="dev", holder={"id": "r-..."})
    """
    path = QuoteString(layout.rollout_lock(container))
    text = QuoteString(json.dumps(holder, sort_keys=True))
    mine = QuoteString(f'"id": "{holder["id"]}"')
    if present:
        # set -C: the file is created only if it does not exist (atomic on the host).
        yield StringCommand(
            "install", "-d", "-m", "0755", QuoteString(layout.ROLLOUT_LOCK_DIR), "&&",
            "{", "(", "set", "-C;", "printf", "'%s\\n'", text, ">", path, ")", "2>/dev/null", "||",
            "grep", "-qF", mine, path, "||",
            "{", "echo", LOCK_HELD, '"$(cat', path, ')"', ">&2;", "exit", "1;", "};", "}",
        )  # fmt: skip
    else:
        yield StringCommand("!", "grep", "-qF", mine, path, "2>/dev/null", "||",
                            "rm", "-f", path)  # fmt: skip


def rollout_step(spec: NodeSpec) -> None:
    step = load_step()
    mine = step["hosts"].get(host.name)
    if mine is None:
        return
    name, phase = step["container"], step["phase"]
    if phase == "find":  # another control machine rebuilding a rollout from the hosts
        node = tf_node(host, exec_probes=False)
        write_line({
            "host": host.name,
            "labels": {
                c.name: {k: c.labels[k] for k in layout.ROLLOUT_LABELS if k in c.labels}
                for c in node.containers.values() if c.labels.get(layout.ROLLOUT_ID_LABEL)
            },
            "locks": host.get_fact(RolloutLocks),
        })  # fmt: skip
        return
    if phase in ("lock", "unlock"):
        rollout_lock(name="Rollout lock", container=name, holder=step["holder"],
                     present=phase == "lock")  # fmt: skip
        return
    if phase.startswith("driver-"):
        driver_step(spec, phase, mine)
        return
    container = spec.containers.get(name)
    if container is None:
        write_line({"host": host.name, "error": f"no container {name} is declared here"})
        return
    if phase in ("observe", "check"):
        _read(spec, name, container, mine)
        return
    node = tf_node(host)
    desired = declared_container(spec, name, container, node)
    desired = dataclasses.replace(
        desired, image=mine["image"], rollout=tuple(sorted(mine["labels"].items()))
    )
    tf_container(
        name=f"Container {name} ({mine['image']})",
        desired=desired,
        observed=node,
        follow_rollout=False,
    )
    pending_replacements(name="Pending replacements")
