"""Lab images, built only from Debian's packages (no image registry is reachable).

``tfenv-lab/base:bookworm`` comes from debootstrap + ``docker import``;
``tfenv-lab/host:<hash>`` adds the host setup from ``files/host.Dockerfile``.
Both are rebuilt only when their inputs change (a hash in the tag/label).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from tfenv.lab.engine import ensure_command
from tfenv.lab.progress import say, step
from tfenv.lab.run import LabError, run
from tfenv.lab.sim import sim_file

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
BASE_IMAGE = f"tfenv-lab/base:{SUITE}"
# What a bare server has: systemd, sshd, sudo, apt's https/gpg needs, python3
# (pyinfra facts use it), and the usual tools.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "ca-certificates",
    "curl",
    "gnupg",
    "python3",
    "iproute2",
    "procps",
    "kmod",
    "less",
    "lsb-release",
)
# The apt settings Debian's official images use: about 90 MB smaller per image.
APT_SLIM = {
    "etc/apt/apt.conf.d/docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
    ),
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
    "etc/apt/apt.conf.d/docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
}
LABEL = "tfenv.lab"
# No buildx on these machines: the classic builder.
CLASSIC_BUILD = {"DOCKER_BUILDKIT": "0"}
# One builder of lab images per machine at a time: two labs coming up side by side
# (the test suite's lanes, a demo beside the tests) would each build the same
# images from scratch. The second waits, then finds them built.
BUILD_LOCK = Path(os.environ.get("TFENV_LAB_BUILD_LOCK", "/var/tmp/tfenv-lab-build.lock"))
_held = [0]  # nesting depth in this process (build_image calls ensure_base_image)


@contextmanager
def building() -> Iterator[None]:
    """Hold the machine-wide lab image build lock (re-entrant within a process)."""
    if _held[0]:
        _held[0] += 1
        try:
            yield
        finally:
            _held[0] -= 1
        return
    with open(BUILD_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"==> Waiting for another tfenv process that builds lab images ({BUILD_LOCK})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        _held[0] = 1
        try:
            yield
        finally:
            _held[0] = 0
            fcntl.flock(lock, fcntl.LOCK_UN)


def base_hash() -> str:
    text = repr((MIRROR, SUITE, BASE_PACKAGES, sorted(APT_SLIM.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_label(image: str, label: str) -> str | None:
    result = run(
        [
            "docker",
            "image",
            "inspect",
            "--format",
            f'{{{{index .Config.Labels "{label}"}}}}',
            image,
        ],
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_base_image() -> str:
    wanted = base_hash()
    if image_label(BASE_IMAGE, "tfenv.lab.base-hash") == wanted:
        return BASE_IMAGE
    with building():
        return _build_base_image(wanted)


def _build_base_image(wanted: str) -> str:
    if image_label(BASE_IMAGE, "tfenv.lab.base-hash") == wanted:
        return BASE_IMAGE  # another process built it while this one waited
    debootstrap = ensure_command(
        "debootstrap", "debootstrap", "debootstrap, for the lab's base image"
    )
    with tempfile.TemporaryDirectory(prefix="tfenv-lab-rootfs-", dir="/var/tmp") as root:
        with step(f"Building the Debian {SUITE} base image with debootstrap (about a minute)"):
            run(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    SUITE,
                    root,
                    MIRROR,
                ],
                timeout=1200,
                hint="debootstrap needs Debian's package mirror; check apt works here.",
            )
            for rel, content in APT_SLIM.items():
                Path(root, rel).write_text(content)
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in Path(root, junk).glob("*"):
                    if entry.is_file():
                        entry.unlink()
        with step(f"Importing it as {BASE_IMAGE}"):
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            result = subprocess.run(
                [
                    "docker",
                    "import",
                    "--change",
                    f"LABEL tfenv.lab.base-hash={wanted}",
                    "--change",
                    f"LABEL {LABEL}=1",
                    "-",
                    BASE_IMAGE,
                ],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                check=False,
            )
            tar.wait()
            if result.returncode != 0 or tar.returncode != 0:
                raise LabError(f"docker import failed: {result.stderr.strip()}")
    return BASE_IMAGE


def build_image(
    repository: str,
    dockerfile: str,
    files: dict[str, str] | None = None,
    args: dict[str, str] | None = None,
    what: str = "",
    timeout: float = 900,
    hint: str = "",
) -> str:
    """``repository:<hash of inputs>``, built over the lab base image when missing.

    ``files`` (name -> text) form the build context next to the Dockerfile.
    """
    ensure_base_image()
    files = files or {}
    args = args or {}
    key = repr((dockerfile, sorted(files.items()), sorted(args.items()), base_hash()))
    tag = f"{repository}:{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if image_label(tag, LABEL) is not None:
        return tag
    with building():
        if image_label(tag, LABEL) is None:  # not built meanwhile by another process
            _build(tag, dockerfile, files, args, what, timeout, hint)
    return tag


def _build(
    tag: str,
    dockerfile: str,
    files: dict[str, str],
    args: dict[str, str],
    what: str,
    timeout: float,
    hint: str,
) -> None:
    with tempfile.TemporaryDirectory(prefix="tfenv-lab-build-") as context:
        Path(context, "Dockerfile").write_text(dockerfile)
        for name, content in files.items():
            Path(context, name).write_text(content)
            Path(context, name).chmod(0o755)
        build_args = [p for k, v in args.items() for p in ("--build-arg", f"{k}={v}")]
        with step(f"Building {what or tag}"):
            run(
                [
                    "docker",
                    "build",
                    "--quiet",
                    "--label",
                    f"{LABEL}=1",
                    *build_args,
                    "-t",
                    tag,
                    context,
                ],
                timeout=timeout,
                env=CLASSIC_BUILD,
                hint=hint,
            )


def ensure_host_image() -> str:
    """The lab host image (files/host.Dockerfile), with the lab's NFS client simulator."""
    dockerfile = resources.files("tfenv.lab").joinpath("files/host.Dockerfile").read_text()
    return build_image(
        "tfenv-lab/host",
        dockerfile,
        {"mount.nfs": sim_file("mount.nfs")},
        what="the lab host image (systemd, sshd, sudo; no Docker)",
    )
