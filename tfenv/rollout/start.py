"""``tfenv rollout start``: from the inventory and the target tag to a checked plan.

Nothing here touches a host: the declared data is validated, the target tag
is resolved to a digest against its registry (as ``tfenv lock`` does; the lock
file itself is written only when the rollout completes), the hosts are cut
into waves, and the plan is shown.
"""

from __future__ import annotations

import re
from pathlib import Path

from tfenv.images.lock import LockedImage
from tfenv.images.locking import LockPlan, plan_locks, resolve_plan
from tfenv.images.reference import pinned_tag_problem
from tfenv.layout import DRIVER_GROUP
from tfenv.model.spec import DRIVER_VERSION, NodeSpec
from tfenv.rollout.declared_driver import DeclarationError, check_declared, declaring_file
from tfenv.rollout.journal import Rollout
from tfenv.rollout.plan import (
    CANARY_GROUP,
    PlanError,
    measures,
    order_hosts,
    parse_waves,
    plan_waves,
)
from tfenv.rollout.run import RolloutError, Say, new_id


def resolve_target(hosts: list, base: Path, lock_path: Path, to_ref: str, say: Say) -> LockedImage:
    why = pinned_tag_problem(to_ref)
    if why:
        raise RolloutError(f"--to {to_ref}: expected {why}")
    plans, problems = plan_locks(hosts, base)
    if problems:
        raise RolloutError("\n".join(problems))
    clients = plans[lock_path].clients if lock_path in plans else {}
    say(f"resolving {to_ref} against its registry")
    resolved, failures = resolve_plan(LockPlan(lock_path, {to_ref}, clients), say)
    if failures:
        raise RolloutError(f"--to {to_ref} could not be resolved: {'; '.join(failures)}")
    return resolved[to_ref]


def build_rollout(
    inventory: str,
    hosts: list,
    specs: dict[str, NodeSpec],
    container: str,
    to_ref: str,
    options: dict,
    base: Path,
    say: Say,
) -> Rollout:
    """The rollout of ``container`` to ``to_ref`` over ``hosts`` (pyinfra Host objects)."""
    targets = [h for h in hosts if container in specs[h.name].containers]
    if not targets:
        raise RolloutError(f"no host of {inventory} declares a container {container}")
    locks = {specs[h.name].image_lock.path for h in targets if specs[h.name].image_lock}
    if len(locks) != 1:
        raise RolloutError(f"the hosts of container {container} use {len(locks)} image locks "
                           f"({', '.join(sorted(map(str, locks)))}); roll out one lock's hosts "
                           "at a time (--limit)")  # fmt: skip
    lock_path = locks.pop()
    try:
        ordered = order_hosts({h.name: tuple(h.groups) for h in targets})
        waves = plan_waves(ordered, parse_waves(options["waves"]))
    except PlanError as exc:
        raise RolloutError(str(exc)) from None
    target = resolve_target(targets, base, lock_path, to_ref, say)
    pinned = target.pinned
    info: dict[str, dict] = {}
    for h in targets:
        spec = specs[h.name]
        declared = spec.containers[container]
        lock = spec.image_lock
        current = lock.resolve(declared.image) if lock else None
        info[h.name] = {
            "declared": current.pinned if current else "",
            "policy": declared.replace.policy,
            "measures": measures(declared),
            "canary": CANARY_GROUP in h.groups,
        }
    if all(i["declared"] == pinned for i in info.values()):
        raise RolloutError(f"every host already declares {to_ref} ({target.digest}): "
                           "nothing to roll out")  # fmt: skip
    return Rollout(
        id=new_id(),
        container=container,
        inventory=inventory,
        to_ref=to_ref,
        to_image=pinned,
        waves=waves,
        hosts=info,
        options={**options, "digest": target.digest, "platform_digest": target.platform_digest},
    )


def plan_text(rollout: Rollout) -> str:
    """The plan, for a person, before anything starts."""
    r = rollout
    lines = [
        f"Rollout {r.id}: container {r.container} -> {r.to_ref}",
        f"  digest {r.to_image.rsplit('@', 1)[1]}",
        f"  {len(r.hosts)} host(s) in {len(r.waves)} wave(s) ({r.options['waves']}); bake "
        f"{r.options['bake']} s; between waves: "
        f"{'wait for promote' if r.options['confirm'] else 'go on'}"
        f"; on a failed gate: {r.options['on_failure']}",
    ]
    for number, wave in enumerate(r.waves, 1):
        parts = []
        for host in wave:
            info = r.hosts[host]
            tags = ["canary"] if info.get("canary") else []
            tags.append({"when-idle": "skipped if busy (pauses)",
                         "wait": "waits while busy", "now": "replaced even if busy (notice)"}
                        .get(info["policy"], info["policy"]))  # fmt: skip
            if not info.get("measures"):
                tags.append("health gates only (no reference model)")
            parts.append(f"{host} ({', '.join(tags)})")
        lines.append(f"  wave {number}: {'; '.join(parts)}")
    lines.append("  gates: running+healthy, sshd, Jupyter (token only), GPUs, a TF op, checkpoints "
                 "writable, clean log; metrics against each host's baseline: p99, error rate, "
                 "KL divergence, GPU memory")  # fmt: skip
    return "\n".join(lines)


def build_driver_rollout(
    inventory: str,
    hosts: list,
    specs: dict[str, NodeSpec],
    version: str,
    options: dict,
    base: Path,
) -> Rollout:
    """The rolling upgrade of the NVIDIA driver to ``version`` over ``hosts``."""
    if not re.fullmatch(DRIVER_VERSION, version):
        raise RolloutError(f"--driver {version}: expected an exact driver version such as "
                           "550.144.03")  # fmt: skip
    targets = [h for h in hosts if specs[h.name].nvidia_driver is not None]
    if not targets:
        raise RolloutError(f"no host of {inventory} declares nvidia_driver")
    never = sorted(h.name for h in targets if specs[h.name].nvidia_driver.reboot == "never")
    if never:
        raise RolloutError(f"{', '.join(never)}: reboot is 'never' in their data, and a driver "
                           "rollout reboots every host it moves. Leave them out (--limit), or "
                           "declare reboot: if-needed for the window")  # fmt: skip
    declarations: dict[str, str] = {}
    problems = []
    for h in targets:
        declared = specs[h.name].nvidia_driver.version
        try:
            path = declaring_file(
                Path(inventory), base, list(h.groups), dict(h.inventory.get_host_data(h.name))
            )
            check_declared(path, declared)
        except (DeclarationError, SyntaxError) as exc:
            problems.append(f"{h.name}: {exc}")
            continue
        if declarations.get(str(path), declared) != declared:
            problems.append(f"{path}: declares two versions for these hosts")
        declarations[str(path)] = declared
    if problems:
        raise RolloutError("the new version could not be written when the rollout completes:\n  "
                           + "\n  ".join(problems))  # fmt: skip
    if all(specs[h.name].nvidia_driver.version == version for h in targets):
        raise RolloutError(f"every host already declares driver {version}: nothing to roll out")
    try:
        ordered = order_hosts({h.name: tuple(h.groups) for h in targets})
        waves = plan_waves(ordered, parse_waves(options["waves"]))
    except PlanError as exc:
        raise RolloutError(str(exc)) from None
    info = {
        h.name: {
            "declared": specs[h.name].nvidia_driver.version,
            "gpu_count": specs[h.name].gpu_count,
            "canary": CANARY_GROUP in h.groups,
            "containers": sorted(specs[h.name].containers),
            "policy": ",".join(sorted({c.replace.policy
                                       for c in specs[h.name].containers.values()})) or "none",
        }
        for h in targets
    }  # fmt: skip
    return Rollout(
        id=new_id(),
        container=DRIVER_GROUP,
        inventory=inventory,
        to_ref=f"nvidia-driver {version}",
        to_image=version,
        waves=waves,
        hosts=info,
        options={**options, "kind": "driver", "declarations": declarations},
    )


def driver_plan_text(rollout: Rollout) -> str:
    r = rollout
    lines = [
        f"Rollout {r.id}: NVIDIA driver -> {r.to_image}",
        f"  {len(r.hosts)} host(s) in {len(r.waves)} wave(s) ({r.options['waves']}); at most "
        f"{r.options['max_unavailable']} host(s) down at once; bake {r.options['bake']} s; "
        f"between waves: {'wait for promote' if r.options['confirm'] else 'go on'}; on a failed "
        f"gate: {r.options['on_failure']}",
        f"  on completion, written to: {', '.join(sorted(r.options['declarations']))}",
    ]
    for number, wave in enumerate(r.waves, 1):
        parts = []
        for host in wave:
            info = r.hosts[host]
            tags = ["canary"] if info.get("canary") else []
            tags.append(f"from {info['declared']}")
            tags.append(f"containers: {', '.join(info['containers']) or 'none'} "
                        f"(in use: {info['policy']})")  # fmt: skip
            parts.append(f"{host} ({'; '.join(tags)})")
        lines.append(f"  wave {number}: {' | '.join(parts)}")
    lines.append("  per host: containers idle (their replace policy), stopped cleanly; the driver "
                 "installed; reboot; containers started; gates: nvidia-smi version and GPU count, "
                 "each container healthy with its GPUs and a TF op")  # fmt: skip
    return "\n".join(lines)
