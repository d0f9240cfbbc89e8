"""``tfenv image build SPEC``: a team image from a spec, gated, pushed and locked.

Order, and why:

1. Check everything (spec, fleet inventory, lock, registry login, pip
   requirements, build arguments) before anything is built.
2. Pull the base by digest and build with the Docker engine (classic
   builder) under a throwaway client config, so the registry login never
   lands in ``~/.docker``.
3. Secret gate: every layer and the config of the built image are searched
   for every declared secret's value; a hit refuses the push.
4. Scan gate: ``trivy`` when it is installed (HIGH and CRITICAL with a fix
   refuse the push), or a plain "not scanned" that the image's labels carry.
5. Push, read the digest back from the registry, and write it into the lock.

A tag is never moved: building a version that is already pushed and locked
does nothing; one the registry holds under another digest is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from tfenv.errors import TfenvError
from tfenv.images import requirements
from tfenv.images.dev_files import DEV_FILES, ENTRYPOINT, dev_file
from tfenv.images.layers import Hit, UnreadableImage, scan_saved_image
from tfenv.images.lock import ImageLock, LockedImage, dump_lock, read_lock
from tfenv.images.locking import registry_of
from tfenv.images.reference import parse_ref
from tfenv.images.registry import RegistryClient, RegistryError
from tfenv.images.spec import LoadedSpec, file_problems, load_spec
from tfenv.model.load import TFENV_KEYS, DeclaredData
from tfenv.model.problems import Problem
from tfenv.model.secrets import SecretUnavailable, SecretValue, read_secret
from tfenv.model.spec import Registry
from tfenv.paths import resolve_path

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CLASSIC_BUILD = {"DOCKER_BUILDKIT": "0"}  # no buildx on many hosts; the classic builder
OCI = "org.opencontainers.image"
SCAN_LABEL = "tfenv.image.scan"
PULL_HINT = "Is {registry} up, and does this machine's Docker trust its CA?"
SPEC_LABEL = "tfenv.image.spec"
TRIVY_ARGS = ("--exit-code", "1", "--severity", "HIGH,CRITICAL", "--ignore-unfixed")
Say = Callable[[str], None]


class BuildError(TfenvError):
    """The build stopped; the message says why and what to do next."""


class GateRefused(BuildError):
    """A gate (secrets, scan) refused the push: nothing was pushed or locked."""


@dataclass
class Plan:
    """Everything the build needs, checked before anything runs."""

    loaded: LoadedSpec
    base_dir: Path
    lock_path: Path
    lock: ImageLock
    base_digest: str
    registry: str  # as hosts name it
    registry_spec: Registry | None
    password: SecretValue | None
    registries: dict[str, Registry] = field(default_factory=dict)  # every declared one
    secrets: dict[str, SecretValue] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # secrets the gate cannot check
    requirements_text: str = ""

    @property
    def spec(self):  # type: ignore[no-untyped-def]
        return self.loaded.spec

    def local(self, reference: str) -> str:
        """``reference`` as this machine reaches its registry (that registry's declared
        endpoint; a registry without one is reached by its name)."""
        registry, path = registry_of(reference)
        declared = self.registries.get(registry)
        if registry == self.registry and self.registry_spec is not None:
            declared = self.registry_spec
        if declared is None or not declared.endpoint:
            return reference
        endpoint = declared.endpoint.removeprefix("https://").rstrip("/")
        return f"{endpoint}/{path}" + reference[len(parse_ref(reference).name) :]

    @property
    def base_pinned(self) -> str:
        return self.local(f"{parse_ref(self.spec.base).name}@{self.base_digest}")

    def client(self) -> RegistryClient:
        ca = None
        if self.registry_spec and self.registry_spec.ca_file:
            ca = resolve_path(self.registry_spec.ca_file, self.base_dir)
        return RegistryClient(
            self.registry,
            username=self.registry_spec.username if self.registry_spec else None,
            password=self.password,
            ca_file=ca,
            endpoint=self.registry_spec.endpoint if self.registry_spec else None,
        )


def plan_build(
    spec_path: Path, base_dir: Path, lock_deps: bool = False
) -> tuple[Plan | None, list[Problem]]:
    """Check the spec and the fleet it names; a plan, or every problem found.
    ``lock_deps``: for writing the requirements file (which may not exist yet)."""
    loaded, problems = load_spec(spec_path)
    if loaded is None:
        return None, problems
    problems = file_problems(loaded, base_dir)
    if lock_deps:
        problems = [p for p in problems if p.field != "pip_requirements"]
        if not loaded.spec.pip_requirements:
            problems.append(
                Problem(
                    str(spec_path), "pip_requirements", "the path of the file to write", "nothing"
                )
            )
    if problems:
        return None, problems
    where = str(spec_path)
    spec = loaded.spec
    declared, problems = _fleet(loaded, base_dir)
    if declared is None:
        return None, problems
    lock_paths = {d.image_lock for d in declared if d.image_lock}
    if len(lock_paths) != 1:
        expected = "an inventory whose hosts declare one image_lock"
        return None, [Problem(where, "inventory", expected, f"{len(lock_paths)} lock file(s)")]
    lock_path = resolve_path(lock_paths.pop(), base_dir)
    lock, issues = read_lock(lock_path)
    if issues:
        return None, [
            Problem(str(lock_path), i.field or "(file)", i.expected, i.got) for i in issues
        ]
    locked = lock.get(spec.base)
    if locked is None:
        return None, [
            Problem(
                where,
                "base",
                f"an image pinned in {lock_path} (run: tfenv lock "
                f"{spec.inventory}, with the base among the fleet's images)",
                spec.base,
            )
        ]
    registries: dict[str, Registry] = {}
    secret_refs = {}
    for data in declared:
        registries.update(data.registries)
        secret_refs.update(data.secrets)
    registry = registry_of(spec.reference)[0]
    registry_spec = registries.get(registry)
    if registry_spec is None:
        problems.append(
            Problem(
                where,
                "name",
                f"an image in a registry {spec.inventory} declares under "
                f"registries (with its login); declared: {', '.join(sorted(registries)) or 'none'}"[
                    :300
                ],
                registry,
            )
        )
    plan = Plan(
        loaded,
        base_dir,
        lock_path,
        lock,
        locked.platform_digest or locked.digest,
        registry,
        registry_spec,
        None,
        registries,
    )
    for name, ref in sorted(secret_refs.items()):
        try:
            value = read_secret(name, ref, base_dir)
        except (SecretUnavailable, UnicodeDecodeError, OSError):
            plan.unreadable.append(name)  # said in the build's output: never searched silently
            continue
        if value.reveal():
            plan.secrets[name] = value
    if registry_spec is not None:
        plan.password = plan.secrets.get(registry_spec.password_secret)
        if plan.password is None:
            problems.append(
                Problem(
                    where,
                    "name",
                    f"the password of {registry} readable here (secret "
                    f"{registry_spec.password_secret!r}; run: tfenv validate {spec.inventory})",
                )
            )
    for arg, value in spec.build_args.items():
        for name, secret in plan.secrets.items():
            if value and secret.reveal() in value:
                problems.append(
                    Problem(
                        where,
                        f"build_args.{arg}",
                        f"a value that is not secret {name!r} "
                        "(build arguments are kept in the image's history)",
                    )
                )
    if not lock_deps:
        problems += _requirements_problems(plan)
    return (None if problems else plan), problems


def _fleet(loaded: LoadedSpec, base_dir: Path) -> tuple[list[DeclaredData] | None, list[Problem]]:
    from tfenv.model.inventory import load_inventory

    where = str(loaded.path)
    try:
        inventory = load_inventory(resolve_path(loaded.spec.inventory, base_dir), base_dir)
    except (Exception, SystemExit) as exc:  # the user's inventory raised: one line
        error = getattr(exc, "exception", exc)
        return None, [
            Problem(
                where,
                "inventory",
                "an inventory tfenv can load",
                f"{type(error).__name__}: {str(error)[:200]}",
            )
        ]
    declared = []
    for host in inventory:
        raw = host.data.dict()
        try:
            declared.append(
                DeclaredData.model_validate({k: raw[k] for k in TFENV_KEYS if k in raw})
            )
        except ValidationError:
            return None, [
                Problem(
                    where,
                    "inventory",
                    f"valid declared data (host {host.name}; "
                    f"run: tfenv validate {loaded.spec.inventory})",
                )
            ]
    if not declared:
        return None, [Problem(where, "inventory", "an inventory with at least one host")]
    return declared, []


def _requirements_problems(plan: Plan) -> list[Problem]:
    spec = plan.spec
    if not spec.pip_requirements:
        return []
    where = str(plan.loaded.path)
    path = resolve_path(spec.pip_requirements, plan.base_dir)
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        inputs, pinned = requirements.parse(text)
    except requirements.RequirementsError as exc:
        return [Problem(f"{path}", "(file)", str(exc))]
    rerun = f"run: tfenv image lock-deps {where}"
    if inputs != spec.pip_inputs(plan.base_digest):
        return [
            Problem(
                where,
                "pip_requirements",
                f"a file resolved for this base and these "
                f"packages (the spec changed since; {rerun})",
                str(path),
            )
        ]
    found = requirements.declared_problems(spec.pip, pinned, requirements.in_base(text))
    if found:
        return [Problem(where, "pip_requirements", f"{'; '.join(found)} ({rerun})")]
    plan.requirements_text = text
    return []


# --- the Dockerfile ---------------------------------------------------------


def render_dockerfile(plan: Plan, with_ca: bool) -> tuple[str, dict[str, tuple[bytes, int]]]:
    """The Dockerfile and its build context (name -> (content, mode)). Pure."""
    spec = plan.spec
    context: dict[str, tuple[bytes, int]] = {}
    lines = [
        f"# Generated by tfenv image build from {plan.loaded.path}: do not edit.",
        f"FROM {plan.base_pinned}",
        *[f"ARG {name}" for name in sorted(spec.build_args)],
        "USER root",
    ]
    if spec.apt:
        packages = " ".join(f"{name}={version}" for name, version in sorted(spec.apt.items()))
        lines.append(
            "RUN apt-get update \\\n"
            f" && apt-get install -y --no-install-recommends {packages} \\\n"
            " && rm -rf /var/lib/apt/lists/* \\\n"
            " && rm -f /etc/ssh/ssh_host_*"  # host keys are made per container, never baked
        )
    lines.append(
        'RUN for need in /usr/sbin/sshd /usr/bin/tini; do test -x "$need" || { echo '
        '"tfenv image build: $need is missing: add openssh-server and tini to apt: '
        '(exact versions)" >&2; exit 1; }; done \\\n'
        f' && test -x {spec.python} || {{ echo "tfenv image build: python: {spec.python} '
        'is not in the base image" >&2; exit 1; }'
    )
    if spec.pip:
        context["tfenv-requirements.txt"] = (plan.requirements_text.encode(), 0o644)
        copies = "tfenv-requirements.txt"
        cert = ""
        if with_ca:
            context["tfenv-build-ca.crt"] = (CA_BUNDLE.read_bytes(), 0o644)
            copies += " tfenv-build-ca.crt"
            cert = "PIP_CERT=/tmp/tfenv-build/tfenv-build-ca.crt "
        lines += [
            f"COPY {copies} /tmp/tfenv-build/",
            f"RUN {cert}{spec.python} -m pip install --no-cache-dir --disable-pip-version-check "
            "--require-hashes -r /tmp/tfenv-build/tfenv-requirements.txt \\\n"
            " && rm -rf /tmp/tfenv-build",
        ]
    modes = []
    for name, (target, mode) in DEV_FILES.items():
        context[name] = (dev_file(name).encode(), mode)
        lines.append(f"COPY {name} {target}")
        modes.append(f"chmod {mode:o} {target}")
    for number, (target, source) in enumerate(sorted(spec.files.items())):
        name = f"tfenv-file-{number}"
        context[name] = (resolve_path(source, plan.base_dir).read_bytes(), 0o644)
        lines.append(f"COPY {name} {target}")
        modes.append(f"chmod 644 {target}")
    user = spec.user
    lines += [
        f"RUN {' && '.join(modes)} \\\n"
        f" && (getent group {user.gid} >/dev/null || groupadd -g {user.gid} {user.name}) \\\n"
        f" && (getent passwd {user.uid} >/dev/null "
        f"|| useradd -u {user.uid} -g {user.gid} -M -s /bin/bash {user.name})",
        f"USER {user.uid}:{user.gid}",
        "EXPOSE 2222 8888",
        f'ENTRYPOINT ["/usr/bin/tini", "--", "{ENTRYPOINT}"]',
        "CMD []",
    ]
    return "\n".join(lines) + "\n", context


def labels(plan: Plan, scan: str, revision: str, now: datetime.datetime) -> dict[str, str]:
    spec = plan.spec
    return {
        f"{OCI}.title": spec.name,
        f"{OCI}.version": spec.tag,
        f"{OCI}.revision": revision,
        f"{OCI}.created": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{OCI}.base.name": spec.base,
        f"{OCI}.base.digest": plan.base_digest,
        SPEC_LABEL: str(plan.loaded.path),
        SCAN_LABEL: scan,
    }


def git_revision(directory: Path) -> str:
    """The commit the spec was built from; ``-dirty`` when its tree had changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("-dirty" if dirty else "")


# --- the gates --------------------------------------------------------------


@dataclass(frozen=True)
class ScanResult:
    passed: bool
    summary: str


def scan_mode(skip_scan: bool) -> str:
    """What the scan label says, decided before the build (the label is in the image)."""
    if skip_scan:
        return "skipped (--skip-scan)"
    if shutil.which("trivy") is None:
        return "not scanned (trivy is not installed)"
    return "trivy image " + " ".join(TRIVY_ARGS)


def run_scan(image: str) -> ScanResult:
    """``trivy image`` on the local image; a summary of what it found."""
    result = subprocess.run(
        ["trivy", "image", *TRIVY_ARGS, "--format", "json", "--quiet", image],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise BuildError(
            f"trivy failed (exit {result.returncode}): {result.stderr.strip()[-600:]}; fix trivy "
            "(its vulnerability database) or build with --skip-scan (the image's labels record it)"
        )
    return ScanResult(result.returncode == 0, summarise_trivy(result.stdout))


def summarise_trivy(output: str, shown: int = 10) -> str:
    try:
        report = json.loads(output or "{}")
    except json.JSONDecodeError:
        return "trivy's report could not be read"
    found = [
        v
        for result in report.get("Results") or []
        for v in result.get("Vulnerabilities") or []
        if v.get("Severity") in ("HIGH", "CRITICAL")
    ]
    if not found:
        return "no HIGH or CRITICAL vulnerability with a fix"
    counts: dict[str, int] = {}
    for v in found:
        counts[v["Severity"]] = counts.get(v["Severity"], 0) + 1
    lines = [", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + " with a fix:"]
    for v in sorted(
        found, key=lambda v: (v.get("Severity") != "CRITICAL", v.get("VulnerabilityID", ""))
    )[:shown]:
        lines.append(
            f"  {v.get('VulnerabilityID')} {v.get('PkgName')} {v.get('InstalledVersion')} "
            f"-> {v.get('FixedVersion')} ({v.get('Severity')})"
        )
    if len(found) > shown:
        lines.append(f"  ... and {len(found) - shown} more (trivy image {' '.join(TRIVY_ARGS)})")
    return "\n".join(lines)


def secret_gate(
    image: str, secrets: dict[str, SecretValue], env: dict[str, str]
) -> tuple[list[Hit], list[str]]:
    """Search the saved image for every secret value: (hits, secrets too short to search)."""
    values = {name: value.reveal() for name, value in secrets.items()}
    with subprocess.Popen(
        ["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as saving:
        if saving.stdout is None:  # never: stdout is a pipe
            raise BuildError("docker save gave no output")
        try:
            hits, short = scan_saved_image(saving.stdout, values)
        except (UnreadableImage, tarfile.TarError) as exc:
            saving.kill()
            raise BuildError(f"the secret gate could not read the saved image: {exc}") from None
        saving.stdout.read()
        error = saving.stderr.read().decode(errors="replace") if saving.stderr else ""
    if saving.returncode != 0:
        raise BuildError(f"docker save {image} failed: {error.strip()[-600:]}")
    return hits, short


# --- running it ---------------------------------------------------------------


@contextlib.contextmanager
def docker_client(plan: Plan) -> Iterator[dict[str, str]]:
    """An environment whose docker client is logged in to the push registry, in
    a private directory removed afterwards (never ~/.docker)."""
    with tempfile.TemporaryDirectory(prefix="tfenv-image-") as config:
        os.chmod(config, 0o700)
        env = {**os.environ, **CLASSIC_BUILD, "DOCKER_CONFIG": config}
        if plan.registry_spec is not None and plan.password is not None:
            host = plan.local(f"{plan.spec.name}:x").split("/", 1)[0]
            _docker(
                ["login", "--username", plan.registry_spec.username, "--password-stdin", host],
                env,
                stdin=plan.password.reveal() + "\n",
                hint=f"check the login of {plan.registry} in {plan.spec.inventory}",
            )
        yield env


def _docker(
    args: list[str],
    env: dict[str, str],
    stdin: str | None = None,
    hint: str = "",
    timeout: float = 3600,
) -> str:
    try:
        result = subprocess.run(
            ["docker", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise BuildError("docker is not installed here: install Docker, start it, retry") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"docker {args[0]} took longer than {timeout:.0f} s. {hint}") from None
    if result.returncode != 0:
        raise BuildError(
            f"docker {' '.join(args[:2])} failed (exit {result.returncode}): "
            f"{result.stderr.strip()[-1500:]}\n{hint}".strip()
        )
    return result.stdout


def _build(
    plan: Plan,
    dockerfile: str,
    context: dict[str, tuple[bytes, int]],
    tag: str,
    image_labels: dict[str, str],
    env: dict[str, str],
    say: Say,
) -> None:
    with tempfile.TemporaryDirectory(prefix="tfenv-build-context-") as directory:
        Path(directory, "Dockerfile").write_text(dockerfile)
        for name, (content, mode) in context.items():
            Path(directory, name).write_bytes(content)
            Path(directory, name).chmod(mode)
        args = ["docker", "build", "--force-rm", "-t", tag]
        for key, value in sorted(image_labels.items()):
            args += ["--label", f"{key}={value}"]
        for key, value in sorted(plan.spec.build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        process = subprocess.Popen(
            [*args, directory], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        tail: list[str] = []
        for line in process.stdout or ():
            tail = [*tail, line.rstrip()][-30:]
            if line.startswith("Step "):
                say(f"      {line.rstrip()[:110]}")
        if process.wait() != 0:
            raise BuildError("docker build failed; its last lines:\n" + "\n".join(tail))


def existing(plan: Plan) -> str | None:
    """The digest the registry holds for the spec's tag, or ``None``."""
    try:
        return plan.client().resolve(registry_of(plan.spec.reference)[1], plan.spec.tag).digest
    except RegistryError as exc:
        if "no such tag" in str(exc):
            return None
        raise BuildError(f"cannot ask {plan.registry} about {plan.spec.tag}: {exc}") from None


@dataclass
class Built:
    reference: str
    digest: str | None  # None: nothing was pushed (already built)
    lock_path: Path
    scan: str
    secrets_checked: int
    note: str = ""


def build(plan: Plan, say: Say, skip_scan: bool = False) -> Built:
    """Build, gate, push and lock. Raises BuildError / GateRefused with the reason."""
    spec = plan.spec
    reference = spec.reference
    in_registry = existing(plan)
    locked = plan.lock.get(reference)
    if in_registry and locked and locked.digest == in_registry:
        return Built(
            reference,
            None,
            plan.lock_path,
            "",
            0,
            f"{reference} is already built, pushed and locked ({in_registry}): "
            f"nothing to do (raise version in {plan.loaded.path} to build another).",
        )
    if in_registry:
        raise BuildError(
            f"{plan.registry} already holds {reference} as {in_registry}, which the lock "
            f"{'does not have' if locked is None else 'pins differently: ' + locked.digest}. "
            f"Tags are never moved: raise version in {plan.loaded.path}."
        )
    scan = scan_mode(skip_scan)
    local_tag = f"tfenv-build/{spec.name.rsplit('/', 1)[-1]}:{spec.tag}"
    with docker_client(plan) as env:
        say(f"[1/6] Pulling the base {spec.base} by digest {plan.base_digest[:19]}...")
        _docker(
            ["pull", "--quiet", plan.base_pinned],
            env,
            hint=PULL_HINT.format(registry=plan.registry),
        )
        dockerfile, context = render_dockerfile(
            plan, with_ca=bool(spec.pip) and CA_BUNDLE.is_file()
        )
        now = datetime.datetime.now(datetime.UTC)
        revision = git_revision(plan.loaded.path.resolve().parent)
        if revision.startswith("unknown"):  # a spec outside the repository tfenv runs from
            revision = git_revision(plan.base_dir)
        image_labels = labels(plan, scan, revision, now)
        say(
            f"[2/6] Building {reference} (apt {len(spec.apt)}, pip {len(spec.pip)}, user "
            f"{spec.user.name} {spec.user.uid}:{spec.user.gid})"
        )
        _build(plan, dockerfile, context, local_tag, image_labels, env, say)
        try:
            say(f"[3/6] Secret gate: {len(plan.secrets)} declared secret value(s) in every layer")
            hits, short = secret_gate(local_tag, plan.secrets, env)
            if hits:
                lines = "\n".join(f"  secret {h.secret!r} in {h.layer}: {h.path}" for h in hits)
                raise GateRefused(
                    f"push refused: declared secret values are inside the image:\n{lines}\n"
                    "Remove them from the build's files (spec files:, requirements, base) and "
                    "build again; give secrets to containers at run time. Nothing was pushed."
                )
            if short or plan.unreadable:
                say(
                    f"      not searched: {', '.join(short + plan.unreadable)} (too short, or "
                    "not readable on this machine)"
                )
            if scan.startswith("trivy"):
                say("[4/6] Scan gate: trivy image, HIGH and CRITICAL with a fix")
                result = run_scan(local_tag)
                if not result.passed:
                    raise GateRefused(
                        f"push refused by the scan:\n{result.summary}\nUpdate the base or the "
                        "packages, or build with --skip-scan (the image's labels record it). "
                        "Nothing was pushed."
                    )
                say(f"      {result.summary}")
            else:
                say(f"[4/6] Scan gate: {scan}: NO vulnerability scan was done")
            say(f"[5/6] Pushing {reference}")
            target = plan.local(reference)
            _docker(["tag", local_tag, target], env)
            try:
                _docker(
                    ["push", "--quiet", target], env, hint=f"check the login of {plan.registry}"
                )
            finally:
                _docker(["rmi", target], env)
            digest = existing(plan)
            if digest is None:
                raise BuildError(f"{plan.registry} does not show {reference} after the push")
        finally:
            _docker(["rmi", local_tag], env)
        say(f"[6/6] Locking {reference} -> {digest} in {plan.lock_path}")
        write_lock_entry(plan.lock_path, LockedImage(reference, digest))
    return Built(reference, digest, plan.lock_path, scan, len(plan.secrets) - len(short))


def write_lock_entry(path: Path, image: LockedImage) -> None:
    """Add (or set) one entry; every other entry and the promotions stay."""
    current, issues = read_lock(path)
    if issues:
        raise BuildError(f"{path}: the lock cannot be read now ({issues[0].expected})")
    images = {**current.images, image.reference: image}
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(dump_lock(images, current.promoted))
    temporary.replace(path)  # never a half-written lock


# --- tfenv image lock-deps ------------------------------------------------------

RESOLVE_SCRIPT = r"""
set -e
"$0" -m pip list --disable-pip-version-check --format json
echo '---tfenv---'
"$0" -m pip install --disable-pip-version-check --no-cache-dir --quiet --dry-run \
    --report - "$@"
"""


def lock_deps(plan: Plan, say: Say) -> Path:
    """Resolve the declared pip packages inside the base image and write the
    requirements file with every package's exact version and hash."""
    spec = plan.spec
    target = resolve_path(spec.pip_requirements or "", plan.base_dir)
    wanted = [f"{name}=={version}" for name, version in sorted(spec.pip.items())]
    with docker_client(plan) as env:
        say(f"[1/2] Pulling the base {spec.base} by digest {plan.base_digest[:19]}...")
        _docker(
            ["pull", "--quiet", plan.base_pinned],
            env,
            hint=PULL_HINT.format(registry=plan.registry),
        )
        say(f"[2/2] Resolving {len(wanted)} package(s) with pip inside the base image")
        mounts: list[str] = []
        if CA_BUNDLE.is_file():
            mounts = ["-v", f"{CA_BUNDLE}:/tmp/tfenv-ca.crt:ro", "-e", "PIP_CERT=/tmp/tfenv-ca.crt"]
        output = _docker(
            [
                "run",
                "--rm",
                "--user",
                "0",
                *mounts,
                *_build_arg_env(spec.build_args),
                "--entrypoint",
                "sh",
                plan.base_pinned,
                "-c",
                RESOLVE_SCRIPT,
                spec.python,
                *wanted,
            ],
            env,
            hint="pip could not resolve the packages: check the names and versions in pip:",
        )
    listed, _, report = output.partition("---tfenv---")
    try:
        installed = {requirements.normalise(p["name"]): p["version"] for p in json.loads(listed)}
        pinned = requirements.from_pip_report(json.loads(report) if report.strip() else {})
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BuildError(
            f"pip's answer could not be read ({exc}); is pip 22.2 or newer in the base?"
        ) from None
    already = {
        requirements.normalise(name): version
        for name, version in spec.pip.items()
        if installed.get(requirements.normalise(name)) == version
        and requirements.normalise(name) not in {p.name for p in pinned}
    }
    text = requirements.render(
        pinned, str(plan.loaded.path), spec.pip_inputs(plan.base_digest), already
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    temporary.write_text(text)
    temporary.replace(target)
    return target


def _build_arg_env(build_args: dict[str, str]) -> list[str]:
    """Build arguments reach pip the way they reach the build's RUN steps."""
    return [part for key, value in sorted(build_args.items()) for part in ("-e", f"{key}={value}")]
