"""Every kind of bad declared data is rejected with host and field named."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import (
    DIGEST_A,
    DIGEST_B,
    GOOD_DATA,
    KEY_ED25519,
    LOCK_TEXT,
    SECRET_ENV_VALUE,
    SECRET_FILE_VALUE,
    prepare_workdir,
)

from tfenv.images.lock import LockedImage, dump_lock, read_lock
from tfenv.model import SpecError, read_secret
from tfenv.model.gpus import Gpus
from tfenv.model.load import load
from tfenv.model.secrets import SecretRef

HOST = "gpu-07.test"


def problems_for(data: dict, base: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(HOST, data, base)
    return [str(p) for p in info.value.problems]


def test_valid_data_loads(workdir: Path, good_data: dict) -> None:
    spec = load(HOST, good_data, workdir)
    assert spec.host == HOST
    assert spec.nvidia_driver.version == "550.127.05"
    assert spec.nvidia_driver.kernel_modules == "open"  # default
    assert spec.containers["dev-a"].gpus == Gpus("devices", devices=(0, 1))
    assert spec.image_lock.get("registry.test:5000/ml/tf:2.17.0").pinned == (
        "registry.test:5000/ml/tf@sha256:" + "a" * 64
    )
    dev_a = spec.containers["dev-a"]
    assert dev_a.ports[0].address is None  # published on the host's publish_address:
    assert dev_a.port_address(dev_a.ports[0], spec.publish_address) == "0.0.0.0"


def set_in(path: str, value: object) -> Callable[[dict], None]:
    """Mutation that sets data[a][b][c] = value for path 'a.b.c' (ints index lists)."""

    def mutate(data: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target = data
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def delete(path: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


def each(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    """Mutation that applies every one of ``mutations``, in order."""

    def mutate(data: dict) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


def lock_text(text: str) -> Callable[[dict], None]:
    """Mutation that points image_lock at a lock file with ``text``."""

    def mutate(data: dict) -> None:
        data["image_lock"] = "bad.lock.yaml"
        data["_lock_text"] = text

    return mutate


LOCK_HEAD = "version: 1\nimages:\n"
A = "sha256:" + "a" * 64

REJECTIONS = [
    # (id, mutation, field named, words the expectation must contain)
    (
        "GPU check image not in the lock",
        set_in("gpu_check_image", "registry.test:5000/base/debian:12"),
        "gpu_check_image",
        "an image pinned in",
    ),
    (
        "GPU check image with a floating tag",
        set_in("gpu_check_image", "registry.test:5000/base/debian:latest"),
        "gpu_check_image",
        "floating tag 'latest'",
    ),
    (
        "floating tag in container",
        set_in("containers.dev-a.image", "registry.test:5000/ml/tf:latest"),
        "containers.dev-a.image",
        "floating tag 'latest'",
    ),
    (
        "no tag in container",
        set_in("containers.dev-a.image", "registry.test:5000/ml/tf"),
        "containers.dev-a.image",
        "explicit tag",
    ),
    (
        "floating tag in lock",
        lock_text(LOCK_HEAD + f"  r.test/tf:latest:\n    digest: {A}\n"),
        "images['r.test/tf:latest']",
        "floating tag",
    ),
    (
        "no tag in lock",
        lock_text(LOCK_HEAD + f"  r.test/tf:\n    digest: {A}\n"),
        "images['r.test/tf']",
        "explicit tag",
    ),
    (
        "missing digest in lock",
        lock_text(LOCK_HEAD + "  r.test/tf:1.0:\n    platform_digest: null\n"),
        "images['r.test/tf:1.0'].digest",
        "run: tfenv lock",
    ),
    (
        "malformed digest in lock",
        lock_text(LOCK_HEAD + "  r.test/tf:1.0:\n    digest: sha256:abc\n"),
        "images['r.test/tf:1.0'].digest",
        "sha256:<64 hex>",
    ),
    (
        "duplicate key in lock (YAML would keep the last silently)",
        lock_text(
            LOCK_HEAD + f"  r.test/tf:1.0:\n    digest: {A}\n  r.test/tf:1.0:\n    digest: {A}\n"
        ),
        "image_lock",
        "each key once (line 5: 'r.test/tf:1.0' again)",
    ),
    (
        "YAML alias in lock",
        lock_text(LOCK_HEAD + f"  r.test/tf:1.0: &e\n    digest: {A}\n  r.test/tf:1.1: *e\n"),
        "image_lock",
        "no YAML aliases (line 5)",
    ),
    (
        "non-string key in lock",
        lock_text(LOCK_HEAD + f"  12345:\n    digest: {A}\n"),
        "image_lock",
        "string keys only (line 3: 12345)",
    ),
    (
        "long value in lock is cut short",
        lock_text(LOCK_HEAD + "  r.test/tf:1.0:\n    digest: " + "x" * 5000 + "\n"),
        "images['r.test/tf:1.0'].digest",
        "got 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...",
    ),
    ("lock path is a directory", set_in("image_lock", "."), "image_lock", "not a directory"),
    ("missing lock file", set_in("image_lock", "nope.yaml"), "image_lock", "to exist"),
    (
        "image not in lock",
        set_in("containers.dev-a.image", "registry.test:5000/ml/tf:9.9.9"),
        "containers.dev-a.image",
        "pinned in images.lock.yaml",
    ),
    (
        "secret env unset",
        set_in("secrets.reg_pw", {"env": "TFENV_TEST_UNSET_VAR"}),
        "secrets.reg_pw",
        "TFENV_TEST_UNSET_VAR to be set",
    ),
    (
        "secret file missing",
        set_in("secrets.token", {"file": "secrets/none"}),
        "secrets.token",
        "to exist",
    ),
    (
        "secret reference to undeclared secret",
        set_in("containers.dev-a.jupyter.token_secret", "nope"),
        "containers.dev-a.jupyter.token_secret",
        "declared in 'secrets'",
    ),
    (
        "registry password secret undeclared",
        lambda d: d["registries"]["registry.test:5000"].update(password_secret="nope"),
        "registries.registry.test:5000.password_secret",
        "declared in 'secrets'",
    ),
    (
        "registry CA file missing",
        lambda d: d["registries"]["registry.test:5000"].update(ca_file="certs/none.crt"),
        "registries.registry.test:5000.ca_file",
        "a PEM file of the CA",
    ),
    (
        "secret with two sources",
        set_in("secrets.token", {"env": "X", "file": "y"}),
        "secrets.token",
        "exactly one of 'env' or 'file'",
    ),
    (
        "duplicate host port",
        set_in("containers.dev-b.ports.0.host", 2201),
        "containers.dev-b.ports[0].host",
        "not already published by containers.dev-a.ports[0]",
    ),
    (
        "port overlaps wildcard",
        lambda d: d["containers"]["dev-b"].update(
            ports=[{"container": 22, "host": 2201, "address": "127.0.0.1"}]
        ),
        "containers.dev-b.ports[0].host",
        "not already published",
    ),
    (
        "gpu index beyond host",
        set_in("containers.dev-b.gpus", [3, 4]),
        "containers.dev-b.gpus",
        "GPU indices 0..3",
    ),
    (
        "gpu count beyond host",
        set_in("containers.dev-b.gpus", 5),
        "containers.dev-b.gpus",
        "at most 4 GPUs",
    ),
    ("gpu indices without gpu_count", delete("gpu_count"), "gpu_count", "the host's GPU count"),
    (
        "gpus malformed",
        set_in("containers.dev-b.gpus", "two"),
        "containers.dev-b.gpus",
        "'all', a GPU count",
    ),
    (
        "driver branch format",
        set_in("nvidia_driver.branch", "R550"),
        "nvidia_driver.branch",
        "three-digit driver branch",
    ),
    (
        "driver version format",
        set_in("nvidia_driver.version", "550"),
        "nvidia_driver.version",
        "exact driver version",
    ),
    (
        "driver version outside branch",
        set_in("nvidia_driver.version", "535.216.01"),
        "nvidia_driver",
        "to belong to branch '550'",
    ),
    (
        "kernel modules choice",
        set_in("nvidia_driver.kernel_modules", "closed"),
        "nvidia_driver.kernel_modules",
        "expected 'open' or 'proprietary', got 'closed'",
    ),
    (
        "nfs missing server",
        delete("nfs_mounts.ckpt.server"),
        "nfs_mounts.ckpt.server",
        "required field",
    ),
    (
        "nfs missing export",
        delete("nfs_mounts.ckpt.export"),
        "nfs_mounts.ckpt.export",
        "required field",
    ),
    (
        "nfs relative mount point",
        set_in("nfs_mounts.ckpt.mount_point", "mnt/ckpt"),
        "nfs_mounts.ckpt.mount_point",
        "absolute path",
    ),
    (
        "checkpoints on undeclared nfs",
        set_in("containers.dev-a.checkpoints.nfs", "other"),
        "containers.dev-a.checkpoints.nfs",
        "an entry in nfs_mounts (ckpt)",
    ),
    (
        "user name invalid",
        set_in("containers.dev-a.user.name", "Alice Smith"),
        "containers.dev-a.user.name",
        "Unix user name",
    ),
    (
        "root uid",
        set_in("containers.dev-a.user.uid", 0),
        "containers.dev-a.user.uid",
        "greater than or equal to 1",
    ),
    (
        "key type invalid",
        set_in("containers.dev-a.authorized_keys", ["ssh-foo AAAA x"]),
        "containers.dev-a.authorized_keys",
        "key type among",
    ),
    (
        "key data invalid",
        set_in("containers.dev-a.authorized_keys", ["ssh-ed25519 !!!notbase64"]),
        "containers.dev-a.authorized_keys",
        "base64",
    ),
    (
        "key data of other type",
        set_in("containers.dev-a.authorized_keys", ["ssh-rsa " + KEY_ED25519.split()[1]]),
        "containers.dev-a.authorized_keys",
        "encodes a ssh-rsa key",
    ),
    (
        "private key pasted",
        set_in("containers.dev-a.authorized_keys", ["-----BEGIN OPENSSH PRIVATE KEY-----"]),
        "containers.dev-a.authorized_keys",
        "key type among",
    ),
    (
        "top-level typo",
        lambda d: d.update(containres={}),
        "containres",
        "did you mean 'containers'",
    ),
    ("tfenv_ prefixed unknown key", lambda d: d.update(tfenv_foo=1), "tfenv_foo", "a known key"),
    (
        "nested typo",
        set_in("containers.dev-a.shm_szie", "8g"),
        "containers.dev-a.shm_szie",
        "did you mean 'shm_size'",
    ),
    (
        "driver typo",
        set_in("nvidia_driver.verison", "550.1.1"),
        "nvidia_driver.verison",
        "did you mean 'version'",
    ),
    (
        "restart policy",
        set_in("containers.dev-a.restart", "sometimes"),
        "containers.dev-a.restart",
        "'unless-stopped'",
    ),
    (
        "bad container name",
        lambda d: d["containers"].update({"bad name!": d["containers"].pop("dev-b")}),
        "containers.bad name!",
        "Docker container name",
    ),
    (
        "sshd port 22 (sshd runs rootless)",
        set_in("containers.dev-b.ports", [{"container": 22, "host": 2202}]),
        "containers.dev-b.ports[0].container",
        "sshd's port inside the container, 2222 (ssh_port)",
    ),
    # Injections: values that would split a docker --mount spec or a unit file.
    (
        "checkpoint path with a comma (would mount the host's / read-write)",
        set_in("containers.dev-a.checkpoints", {"nfs": "ckpt", "path": "/checkpoints,source=/"}),
        "containers.dev-a.checkpoints.path",
        "no ',', '=', spaces or '..'",
    ),
    (
        "NFS export with a newline (would add unit directives)",
        set_in("nfs_mounts.ckpt.export", "/export/ckpt\nFailureAction=poweroff-force"),
        "nfs_mounts.ckpt.export",
        "an absolute path of letters",
    ),
    (
        "NFS mount name with a newline",
        lambda d: d["nfs_mounts"].update(
            {"x\nFailureAction=poweroff-force": d["nfs_mounts"]["ckpt"]}
        ),
        "nfs_mounts.",
        "an NFS mount name of lowercase letters",
    ),
    (
        "NFS mount option with a trailing newline",
        set_in("nfs_mounts.ckpt.options", ["hard\n"]),
        "nfs_mounts.ckpt.options",
        "letters, digits and _.=:/- only",
    ),
    (
        "mount point on a system directory",
        set_in("nfs_mounts.ckpt.mount_point", "/etc"),
        "nfs_mounts.ckpt.mount_point",
        "not / or a system directory",
    ),
    (
        "mount point that climbs out",
        set_in("nfs_mounts.ckpt.mount_point", "/mnt/../etc"),
        "nfs_mounts.ckpt.mount_point",
        "no ',', '=', spaces or '..'",
    ),
    (
        "checkpoints on /",
        set_in("containers.dev-a.checkpoints", {"nfs": "ckpt", "path": "/"}),
        "containers.dev-a.checkpoints.path",
        "not / or a system directory",
    ),
    (
        "checkpoints over the user's home",
        set_in("containers.dev-a.checkpoints", {"nfs": "ckpt", "path": "/home/alice/ckpt"}),
        "containers.dev-a.checkpoints.path",
        "outside /home/alice (the home)",
    ),
    (
        "checkpoints over tfenv's secrets",
        set_in("containers.dev-a.checkpoints", {"nfs": "ckpt", "path": "/run/secrets"}),
        "containers.dev-a.checkpoints.path",
        "outside /home/alice (the home)",
    ),
    (
        "container name with a trailing newline",
        lambda d: d["containers"].update({"dev-c\n": d["containers"].pop("dev-b")}),
        "containers.'dev-c\\n'",
        "Docker container name",
    ),
    (
        "driver version in Unicode digits",
        # fullwidth digits: \d matches them, an ASCII grammar does not
        set_in("nvidia_driver", {"branch": "550", "version": "550.\uff11\uff12\uff17.05"}),
        "nvidia_driver.version",
        "an exact driver version",
    ),
    (
        "publish address that is no IP address",
        lambda d: d.update(publish_address="999.1.1.1"),
        "publish_address",
        "an IP address",
    ),
    (
        "label key with '='",
        set_in("containers.dev-a.labels", {"a=b": "c"}),
        "containers.dev-a.labels",
        "(no '=')",
    ),
    (
        "label in tfenv's own names",
        set_in("containers.dev-a.labels", {"tfenv.managed": "false"}),
        "containers.dev-a.labels",
        "outside tfenv's own 'tfenv.' names",
    ),
    (
        "environment value over the kernel's argument limit",
        set_in("containers.dev-a.env", {"BIG": "x" * 200000}),
        "containers.dev-a.env",
        "under 131071 bytes",
    ),
    (
        "registry name with a trailing newline",
        lambda d: d["registries"].update(
            {"reg.test:5000\n": d["registries"].pop("registry.test:5000")}
        ),
        "registries.'reg.test:5000\\n'",
        "a registry host[:port]",
    ),
    (
        "registry CA file that is a secret file",
        lambda d: d["registries"]["registry.test:5000"].update(ca_file="secrets/token"),
        "registries.registry.test:5000.ca_file",
        "not one of the declared secrets",
    ),
    (
        "registry CA file that is no certificate",
        lambda d: d["registries"]["registry.test:5000"].update(ca_file="images.lock.yaml"),
        "registries.registry.test:5000.ca_file",
        "does not hold a PEM certificate (its content is not shown)",
    ),
    (
        "apt key file that is no key",
        set_in(
            "apt_repositories", {"cuda": {"url": "https://m.test/cuda/", "key": "images.lock.yaml"}}
        ),
        "apt_repositories.cuda.key",
        "does not hold a public key",
    ),
    (
        "Docker engine from an unknown source",
        set_in("docker_engine", {"source": "snap", "version": "27.3.1"}),
        "docker_engine.source",
        "'docker' or 'distribution'",
    ),
    (
        "Docker engine version with shell characters",
        set_in("docker_engine", {"version": "27.3.1; reboot"}),
        "docker_engine.version",
        "a package version such as 27.3.1",
    ),
    (
        "container toolkit version that is no exact version",
        set_in("container_toolkit", {"version": "1.17"}),
        "container_toolkit.version",
        "a version such as 1.17.3",
    ),
    (
        "apt repository URL with a space (would split the sources line)",
        set_in("apt_repositories", {"cuda": {"url": "https://m.test/cuda/ x", "key": "k"}}),
        "apt_repositories.cuda.url",
        "an http(s) URL",
    ),
    (
        "unknown replace policy",
        set_in("containers.dev-a.replace", {"policy": "whenever"}),
        "containers.dev-a.replace.policy",
        "'when-idle', 'wait' or 'now'",
    ),
    (
        "wait timeout of zero",
        set_in("containers.dev-a.replace", {"policy": "wait", "timeout": 0}),
        "containers.dev-a.replace.timeout",
        "greater than or equal to 1",
    ),
    (
        "workspace on an undeclared NFS mount",
        set_in("containers.dev-a.workspace", {"nfs": "homes"}),
        "containers.dev-a.workspace.nfs",
        "the name of an entry in nfs_mounts (ckpt)",
    ),
    (
        "unknown capability",
        set_in("containers.dev-a.cap_add", ["NET_ADMIN", "GOD_MODE"]),
        "containers.dev-a.cap_add[1]",
        "a Linux capability name",
    ),
    (
        "privileged sshd port",
        set_in("containers.dev-a.ssh_port", 22),
        "containers.dev-a.ssh_port",
        "greater than or equal to 1024",
    ),
    (
        "publish address with a newline",
        lambda d: d.update(publish_address="0.0.0.0\n"),
        "publish_address",
        "an IP address",
    ),
    (
        "two containers on one host port, one by default address",
        lambda d: d["containers"]["dev-b"]["ports"].append({"container": 8888, "host": 2201}),
        "containers.dev-b.ports[1].host",
        "not already published by containers.dev-a.ports[0]",
    ),
    # A collision whichever comes first: the specific address, then the wildcard.
    (
        "wildcard over a port already published on one address",
        each(  # dev-b on the host's publish_address, 0.0.0.0
            set_in("containers.dev-a.ports.0.address", "127.0.0.1"),
            set_in("containers.dev-b.ports.0.host", 2201),
        ),
        "containers.dev-b.ports[0].host",
        "not already published by containers.dev-a.ports[0]",
    ),
    (
        "IPv6 wildcard over a port already published on ::1",
        each(
            set_in("containers.dev-a.ports.0.address", "::1"),
            set_in("containers.dev-b.ports.0", {"container": 2222, "host": 2201, "address": "::"}),
        ),
        "containers.dev-b.ports[0].host",
        "not already published by containers.dev-a.ports[0]",
    ),
    (
        "IPv6 address on a port already published on ::",
        each(
            set_in("containers.dev-a.ports.0.address", "::"),
            set_in("containers.dev-b.ports.0", {"container": 2222, "host": 2201, "address": "::1"}),
        ),
        "containers.dev-b.ports[0].host",
        "not already published by containers.dev-a.ports[0]",
    ),
    (
        "two NFS mounts on one mount point",
        lambda d: d["nfs_mounts"].update(
            other={"server": "nfs2.test", "export": "/export/x", "mount_point": "/mnt/ckpt"}
        ),
        "nfs_mounts.other.mount_point",
        "a mount point not used by nfs_mounts.ckpt",
    ),
    (
        "the same mount point spelled with a trailing slash",
        lambda d: d["nfs_mounts"].update(
            other={"server": "nfs2.test", "export": "/export/x", "mount_point": "/mnt/ckpt/"}
        ),
        "nfs_mounts.other.mount_point",
        "an absolute path without a trailing '/' (such as /mnt/ckpt)",
    ),
    (
        "shm_size 0 (Docker's default, read back as drift on every run)",
        set_in("containers.dev-a.shm_size", "0"),
        "containers.dev-a.shm_size",
        "a size above 0",
    ),
    # Newlines would add directives to the mount unit (What=, Where=, Options=).
    (
        "NFS server with a trailing newline",
        set_in("nfs_mounts.ckpt.server", "nfs.test\n"),
        "nfs_mounts.ckpt.server",
        "a host name or IP address",
    ),
    (
        "NFS export with a trailing newline",
        set_in("nfs_mounts.ckpt.export", "/export/ckpt\n"),
        "nfs_mounts.ckpt.export",
        "an absolute path of letters",
    ),
    (
        "NFS mount point with a trailing newline",
        set_in("nfs_mounts.ckpt.mount_point", "/mnt/ckpt\n"),
        "nfs_mounts.ckpt.mount_point",
        "an absolute path of letters",
    ),
    (
        "NFS mount option with a newline inside",
        set_in("nfs_mounts.ckpt.options", ["hard", "nfsvers=4.1\nExecStartPre=/bin/reboot"]),
        "nfs_mounts.ckpt.options",
        "letters, digits and _.=:/- only",
    ),
    (
        "lock of another format version",
        lock_text(f"version: 2\nimages:\n  r.test/tf:1.0:\n    digest: {A}\n"),
        "version",
        "lock format version 1, got 2",
    ),
    (
        "lock without a format version",
        lock_text(f"images:\n  r.test/tf:1.0:\n    digest: {A}\n"),
        "version",
        "lock format version 1, got None",
    ),
    (
        "malformed platform digest in lock",
        lock_text(
            LOCK_HEAD + f"  r.test/tf:1.0:\n    digest: {A}\n    platform_digest: sha256:b\n"
        ),
        "images['r.test/tf:1.0'].platform_digest",
        "a digest of the form sha256:<64 hex>, got 'sha256:b'",
    ),
    (
        "platform digest of another algorithm in lock",
        lock_text(
            LOCK_HEAD + f"  r.test/tf:1.0:\n    digest: {A}\n    platform_digest: md5:{'b' * 32}\n"
        ),
        "images['r.test/tf:1.0'].platform_digest",
        "a digest of the form sha256:<64 hex>",
    ),
]


def bad_data(mutate: Callable[[dict], None], workdir: Path) -> dict:
    """GOOD_DATA with one REJECTIONS case applied; a case's bad lock text is
    written to ``workdir`` and every container then points into it."""
    data = copy.deepcopy(GOOD_DATA)
    mutate(data)
    if "_lock_text" in data:
        (workdir / "bad.lock.yaml").write_text(data.pop("_lock_text"))
        for name in data["containers"]:
            data["containers"][name]["image"] = "r.test/tf:1.0"
    return data


@pytest.mark.parametrize(
    ("mutate", "field", "words"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejection_names_host_and_field(workdir: Path, mutate, field, words):
    problems = problems_for(bad_data(mutate, workdir), workdir)
    matching = [p for p in problems if p.startswith(f"{HOST}: ") and field in p and words in p]
    assert matching, f"no problem naming {field!r} with {words!r} in {problems}"


SNAPSHOT = Path(__file__).parent / "fixtures" / "rejections.yaml"


def test_every_rejection_says_exactly_what_it_said(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every case above, its whole message list, word for word (tests/fixtures/rejections.yaml).

    The messages are what an operator reads to fix the data: a change in their
    wording must be deliberate. After one, rewrite the file with
    TFENV_UPDATE_SNAPSHOT=1 and review its diff.
    """
    seen: dict[str, list[str]] = {}
    for case_id, mutate, _, _ in REJECTIONS:
        workdir = prepare_workdir(tmp_path_factory.mktemp("rejection"), monkeypatch)
        data = bad_data(mutate, workdir)
        seen[case_id] = [p.replace(str(workdir), "WORKDIR") for p in problems_for(data, workdir)]
    if os.environ.get("TFENV_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(yaml.safe_dump(seen, sort_keys=False, width=1000, allow_unicode=False))
    expected = yaml.safe_load(SNAPSHOT.read_text())
    for case_id, problems in seen.items():
        assert problems == expected.get(case_id), case_id
    assert set(seen) == set(expected)


def test_secret_file_readable_by_others_is_rejected(workdir: Path, good_data: dict) -> None:
    os.chmod(workdir / "secrets" / "token", 0o644)
    problems = problems_for(good_data, workdir)
    assert any(
        "secrets.token" in p and "readable only by its owner" in p and "chmod 600" in p
        for p in problems
    ), problems


@pytest.mark.parametrize(
    "mode", [0o640, 0o620, 0o610, 0o660, 0o604, 0o602, 0o601], ids=lambda mode: f"{mode:04o}"
)
def test_secret_file_any_group_or_other_bit_is_rejected(
    workdir: Path, good_data: dict, mode: int
) -> None:
    """Group bits count as much as the others' (a whole team may share a group)."""
    os.chmod(workdir / "secrets" / "token", mode)
    problems = problems_for(good_data, workdir)
    assert problems == [
        f"{HOST}: secrets.token: expected file {workdir / 'secrets' / 'token'} to be readable "
        f"only by its owner (mode is {mode:04o}; run: chmod 600 {workdir / 'secrets' / 'token'})"
    ]


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=lambda mode: f"{mode:04o}")
def test_secret_file_for_its_owner_only_loads(workdir: Path, good_data: dict, mode: int) -> None:
    os.chmod(workdir / "secrets" / "token", mode)
    assert read_secret("token", SecretRef(file="secrets/token"), workdir).reveal() == (
        SECRET_FILE_VALUE
    )


def test_secret_file_owned_by_another_user_is_rejected(
    workdir: Path, good_data: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's 0600 file: whoever owns it can change it under us."""
    owner = (workdir / "secrets" / "token").stat().st_uid
    load(HOST, good_data, workdir)  # owned by the user running tfenv: accepted
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)  # tfenv now runs as someone else
    assert problems_for(good_data, workdir) == [
        f"{HOST}: secrets.token: expected file {workdir / 'secrets' / 'token'} to be owned by "
        f"the user running tfenv (uid {owner + 1})"
    ]


# Declared data on the edge of a rule, which must load.
EDGES = [
    ("as many GPUs as the host has", set_in("containers.dev-b.gpus", 4)),
    ("the host's last GPU index", set_in("containers.dev-b.gpus", [3])),
    ("every GPU index of the host", set_in("containers.dev-b.gpus", [0, 1, 2, 3])),
    (
        "one host port on two specific addresses",
        each(
            set_in("containers.dev-a.ports.0.address", "127.0.0.1"),
            set_in(
                "containers.dev-b.ports.0", {"container": 2222, "host": 2201, "address": "10.0.0.5"}
            ),
        ),
    ),
    (
        "one host port, tcp and udp",
        lambda d: d["containers"]["dev-b"]["ports"][0].update(host=2201, protocol="udp"),
    ),
    (
        "two NFS mounts on two mount points",
        lambda d: d["nfs_mounts"].update(
            other={"server": "nfs2.test", "export": "/export/x", "mount_point": "/mnt/ckpt2"}
        ),
    ),
]


@pytest.mark.parametrize("mutate", [e[1] for e in EDGES], ids=[e[0] for e in EDGES])
def test_data_on_the_edge_of_a_rule_loads(workdir: Path, good_data: dict, mutate) -> None:
    mutate(good_data)
    load(HOST, good_data, workdir)


# --- the image lock ------------------------------------------------------------

P = "sha256:" + "c" * 64


def test_a_platform_digest_is_what_deploys_pull(workdir: Path, good_data: dict) -> None:
    """An index digest names every platform's image; the lock's platform digest
    (linux/amd64) is the one image the hosts run."""
    (workdir / "images.lock.yaml").write_text(
        LOCK_TEXT.replace(
            f"digest: {DIGEST_A}\n", f"digest: {DIGEST_A}\n    platform_digest: {P}\n"
        )
    )
    spec = load(HOST, good_data, workdir)
    assert spec.image_lock.get("registry.test:5000/ml/tf:2.17.0") == LockedImage(
        "registry.test:5000/ml/tf:2.17.0", DIGEST_A, P
    )
    assert spec.image_lock.get("registry.test:5000/ml/tf:2.17.0").pinned == (
        f"registry.test:5000/ml/tf@{P}"
    )
    # Without one, the manifest digest itself.
    assert spec.image_lock.get("registry.test:5000/ml/tf:2.18.0").pinned == (
        f"registry.test:5000/ml/tf@{DIGEST_B}"
    )


def test_a_written_lock_reads_back_the_same(tmp_path: Path) -> None:
    images = {
        "r.test/tf:1.0": LockedImage("r.test/tf:1.0", DIGEST_A, P),
        "r.test/tf:0.9": LockedImage("r.test/tf:0.9", DIGEST_B),
    }
    (tmp_path / "lock.yaml").write_text(dump_lock(images))
    lock, issues = read_lock(tmp_path / "lock.yaml")
    assert (lock.images, issues) == (images, [])


def test_all_problems_reported_at_once(workdir: Path, good_data: dict) -> None:
    good_data["nvidia_driver"]["branch"] = "x"
    good_data["nfs_mounts"]["ckpt"]["mount_point"] = "relative"
    good_data["containers"]["dev-a"]["user"]["name"] = "Bad Name"
    assert len(problems_for(good_data, workdir)) == 3


def test_other_top_level_keys_are_left_to_pyinfra(workdir: Path, good_data: dict) -> None:
    good_data.update(ssh_user="ops", ssh_known_hosts_file="/x", my_app_setting=1)
    load(HOST, good_data, workdir)


# --- secrets never leak -------------------------------------------------------


def test_resolved_secret_never_shows_its_value(workdir: Path) -> None:
    value = read_secret("token", SecretRef(file="secrets/token"), workdir)
    assert value.reveal() == SECRET_FILE_VALUE
    for text in (repr(value), str(value), f"{value}", f"{value!r}", repr([value])):
        assert SECRET_FILE_VALUE not in text
    env_value = read_secret("reg_pw", SecretRef(env="TFENV_TEST_REG_PW"), workdir)
    assert env_value.reveal() == SECRET_ENV_VALUE
    assert SECRET_ENV_VALUE not in repr(env_value)


def test_spec_repr_and_dump_hold_references_only(workdir: Path, good_data: dict) -> None:
    spec = load(HOST, good_data, workdir)
    dumped = repr(spec) + str(spec) + spec.model_dump_json()
    assert "TFENV_TEST_REG_PW" in dumped  # the reference is there...
    assert SECRET_ENV_VALUE not in dumped  # ...the value is not
    assert SECRET_FILE_VALUE not in dumped


PASTED = "hunter2-PASTED-value"


def _set_password_secret(data: dict) -> None:
    data["registries"]["registry.test:5000"]["password_secret"] = PASTED


# Values pasted where a reference or a name belongs: never echoed back.
ECHO_CASES = [
    ("value-as-ref", set_in("secrets.reg_pw", PASTED)),
    ("value-as-env-name", set_in("secrets.reg_pw", {"env": PASTED})),
    ("value-as-password-secret", _set_password_secret),
    ("value-as-token", set_in("containers.dev-a.jupyter.token_secret", PASTED)),
    ("value-in-container-secrets", set_in("containers.dev-a.secrets", [PASTED])),
    ("value-in-env", set_in("containers.dev-a.env", {"BAD NAME": PASTED})),
    (
        "private-key-as-public-key",
        set_in(
            "containers.dev-a.authorized_keys", [f"-----BEGIN OPENSSH PRIVATE KEY----- {PASTED}"]
        ),
    ),
    ("value-as-file-path", set_in("secrets.reg_pw", {"file": "ghp_hunter2PASTEDvalue42"})),
    ("value-in-a-label-key", set_in("containers.dev-a.labels", {"x": "ok", PASTED + "=1": "y"})),
]
PASTED_VALUES = (PASTED, "hunter2PASTEDvalue42")


@pytest.mark.parametrize("mutate", [c[1] for c in ECHO_CASES], ids=[c[0] for c in ECHO_CASES])
def test_errors_never_echo_a_pasted_secret(
    workdir: Path, good_data: dict, mutate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mutate(good_data)
    with pytest.raises(SpecError) as info:
        load(HOST, good_data, workdir)
    assert info.value.problems
    for pasted in PASTED_VALUES:
        assert pasted not in str(info.value)
        assert pasted not in caplog.text


def test_jupyter_published_beyond_loopback_is_a_warning(workdir: Path, good_data: dict) -> None:
    from tfenv.model.load import warnings

    dev = good_data["containers"]["dev-a"]
    dev["ports"] = [{"container": 2222, "host": 2201}, {"container": 8888, "host": 8801}]
    assert warnings(load(HOST, good_data, workdir)) == []  # 127.0.0.1 by default
    dev["ports"][1]["address"] = "0.0.0.0"
    (warning,) = warnings(load(HOST, good_data, workdir))
    assert str(warning).startswith(f"{HOST}: containers.dev-a.ports[1]: expected Jupyter published")
    assert "published on 0.0.0.0" in str(warning)


def test_data_too_deep_to_check_is_one_problem(workdir: Path, good_data: dict) -> None:
    from tfenv.model.inventory import validate_hosts

    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    good_data["containers"]["dev-a"]["labels"] = deep

    class FakeHost:  # the two things validate_hosts reads from a pyinfra Host
        name = HOST

        class data:
            @staticmethod
            def dict() -> dict:
                return good_data

    specs, problems = validate_hosts([FakeHost()], workdir)
    assert specs == {} and len(problems) >= 1
    assert all(p.host == HOST for p in problems)
