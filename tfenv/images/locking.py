"""``tfenv lock``: resolve every pinned tag against its registry, rewrite or check the lock.

The images come from the inventory's declared data (containers, the GPU
check image) plus every entry already in the lock; the credentials from the
declared ``registries`` and ``secrets``. Nothing is pulled: one HEAD (or GET
for an index) per image.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from tfenv.images.lock import LockedImage, read_lock
from tfenv.images.reference import parse_ref, pinned_tag_problem
from tfenv.images.registry import RegistryClient, RegistryError
from tfenv.model.load import TFENV_KEYS, DeclaredData
from tfenv.model.secrets import SecretUnavailable, read_secret
from tfenv.paths import resolve_path


@dataclass
class LockPlan:
    """One lock file: the images it must hold and how to reach their registries."""

    path: Path
    images: set[str] = field(default_factory=set)
    clients: dict[str, RegistryClient] = field(default_factory=dict)


def registry_of(reference: str) -> tuple[str, str]:
    """``registry.example:5000/ml/tf:2.17`` -> (``registry.example:5000``, ``ml/tf``)."""
    name = parse_ref(reference).name
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "registry-1.docker.io", name if rest else f"library/{name}"


def plan_locks(hosts: Iterable, base: Path) -> tuple[dict[Path, LockPlan], list[str]]:
    """Lock plans for ``hosts`` (pyinfra Host objects), and the problems found."""
    plans: dict[Path, LockPlan] = {}
    problems: list[str] = []
    for host in hosts:
        raw = host.data.dict()
        try:
            declared = DeclaredData.model_validate({k: raw[k] for k in TFENV_KEYS if k in raw})
        except ValidationError as exc:
            problems.append(f"{host.name}: invalid data ({exc.error_count()} error(s)); "
                            "run tfenv validate for details")  # fmt: skip
            continue
        images = [c.image for c in declared.containers.values()]
        images += [declared.gpu_check_image] if declared.gpu_check_image else []
        if declared.image_lock is None:
            if images:
                problems.append(f"{host.name}: image_lock: a lock file path, images are declared")
            continue
        path = resolve_path(declared.image_lock, base)
        plan = plans.setdefault(path, LockPlan(path))
        for image in images:
            why = pinned_tag_problem(image)
            if why:
                problems.append(f"{host.name}: image {image!r}: expected {why}")
            else:
                plan.images.add(image)
        for registry, spec in declared.registries.items():
            if registry in plan.clients:
                continue
            try:
                password = read_secret(
                    spec.password_secret, declared.secrets[spec.password_secret], base
                )
            except (KeyError, SecretUnavailable) as exc:
                problems.append(f"{host.name}: registries.{registry}: {exc}")
                continue
            ca = resolve_path(spec.ca_file, base) if spec.ca_file else None
            plan.clients[registry] = RegistryClient(
                registry, username=spec.username, password=password, ca_file=ca,
                endpoint=spec.endpoint,
            )  # fmt: skip
    for plan in plans.values():
        existing, _ = read_lock(plan.path)
        plan.images |= set(existing.images)
    return plans, problems


def resolve_plan(plan: LockPlan, say: Callable[[str], None]) -> tuple[dict, list[str]]:
    """Resolve every image of ``plan``: (reference -> LockedImage, problems)."""
    resolved: dict[str, LockedImage] = {}
    problems = []
    for number, reference in enumerate(sorted(plan.images), 1):
        registry, repository = registry_of(reference)
        client = plan.clients.get(registry) or RegistryClient(registry)
        try:
            answer = client.resolve(repository, parse_ref(reference).tag or "")
        except (RegistryError, OSError) as exc:
            problems.append(f"{reference}: {exc}")
            say(f"  [{number}/{len(plan.images)}] {reference}  FAILED")
            continue
        except (ValueError, KeyError, TypeError, AttributeError, http.client.HTTPException) as exc:
            # A registry (or a proxy in front of it) that answers garbage: one
            # problem line for this image, never a traceback.
            problems.append(
                f"{reference}: the registry's answer could not be read "
                f"({type(exc).__name__}: {str(exc)[:120]}); is {registry} a Docker registry?"
            )
            say(f"  [{number}/{len(plan.images)}] {reference}  FAILED")
            continue
        resolved[reference] = LockedImage(reference, answer.digest, answer.platform_digest)
        say(f"  [{number}/{len(plan.images)}] {reference}  {answer.digest}")
    return resolved, problems


def lock_changes(path: Path, resolved: dict[str, LockedImage]) -> list[str]:
    """What differs between the lock file at ``path`` and ``resolved``, one line each."""
    current, _ = read_lock(path)
    changes = []
    for reference, image in sorted(resolved.items()):
        old = current.images.get(reference)
        if old is None:
            changes.append(f"{reference}: not in the lock (registry has {image.digest})")
        elif old.digest != image.digest:
            changes.append(f"{reference}: tag moved from {old.digest} to {image.digest}")
        elif old.platform_digest != image.platform_digest:
            # The same index, another linux/amd64 manifest in it (a re-pushed platform).
            changes.append(
                f"{reference}: its linux/amd64 manifest moved from "
                f"{old.platform_digest or 'none recorded'} to {image.platform_digest or 'none'} "
                "(the index digest is unchanged)"
            )
    return changes
