"""The lab registry (TLS from the lab CA, htpasswd login) and the lab TF images in it.

Real Docker, real registry, real TensorFlow: the images are pulled by the
digests in the lab's lock and run.

Image: the lab TF releases themselves, real TensorFlow (they are the subject).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tfenv.images.lock import read_lock
from tfenv.images.registry import MANIFEST_TYPES, RegistryClient, RegistryError
from tfenv.lab.fleet import Lab, LabState, ssh_command
from tfenv.lab.tf_images import RELEASES, REPOSITORY
from tfenv.model.secrets import SecretValue

pytestmark = pytest.mark.lab
TF_OP = (
    "import tensorflow as tf; "
    "print(float(tf.reduce_sum(tf.matmul(tf.ones((2, 3)), tf.ones((3, 2))))))"
)


def _registry(state: LabState) -> dict:
    return state.registry


def _client(state: LabState, **overrides) -> RegistryClient:
    registry = _registry(state)
    password = Path(registry["password_file"]).read_text().strip()
    options = {
        "username": registry["username"],
        "password": SecretValue("pw", password),
        "ca_file": registry["ca_file"],
        **overrides,
    }
    return RegistryClient(registry["local"], **options)


def test_registry_wants_a_login_and_the_lab_ca(lab_of) -> None:
    state = lab_of(1)
    _client(state).check()  # the lab's own credentials and CA work
    with pytest.raises(RegistryError, match="asks for a login"):
        _client(state, username=None, password=None).check()
    with pytest.raises(RegistryError, match="login refused") as refused:
        _client(state, password=SecretValue("pw", "wrong-password-123")).check()
    assert "wrong-password-123" not in str(refused.value)
    with pytest.raises(RegistryError, match="TLS certificate not trusted"):
        _client(state, ca_file=None).check()


def test_lab_hosts_reach_the_registry_by_its_lab_name_over_tls(lab_of) -> None:
    state = lab_of(1)
    registry = _registry(state)
    ssh = ssh_command(state.key, state.known_hosts, state.hosts[0].port, state.user)
    ca = Path(registry["ca_file"]).read_text()
    script = (
        "cat > /tmp/lab-ca.crt && curl -s -o /dev/null -w '%{http_code}' "
        f"--cacert /tmp/lab-ca.crt https://{registry['host']}/v2/"
    )
    result = subprocess.run(
        [*ssh, script], input=ca, capture_output=True, text=True, timeout=30, check=False
    )
    # 401: TLS verified against the lab CA under the lab name; the login is still due.
    assert result.stdout == "401", result.stderr


def test_lock_holds_the_registry_digests_and_releases_share_layers(lab_of) -> None:
    state = lab_of(1, images=True)
    lock, issues = read_lock(Path(state.lock))
    assert issues == []
    host = _registry(state)["host"]
    wanted = {f"{host}/{REPOSITORY}:{release.tag}" for release in RELEASES}
    assert wanted <= set(lock.images)
    client = _client(state)
    layers = {}
    for reference, image in lock.images.items():
        repository, tag = reference.removeprefix(f"{host}/").rsplit(":", 1)
        resolved = client.resolve(repository, tag)
        assert resolved.digest == image.digest, reference
        assert resolved.media_type in MANIFEST_TYPES
        with client.request(
            "GET", f"/v2/{repository}/manifests/{tag}", repository, {"Accept": resolved.media_type}
        ) as answer:
            layers[tag] = [(lay["digest"], lay["size"]) for lay in json.load(answer)["layers"]]
    one, two = (layers[release.tag] for release in RELEASES[:2])
    assert one[:-1] == two[:-1], "releases must share every layer but their own"
    assert one[-1] != two[-1]
    assert two[-1][1] < 64 * 1024, "a release bump must pull only a small layer"
    assert sum(size for _, size in one) > 100 * 2**20, "real TensorFlow is in the image"


def _pull(state: LabState, lab: Lab, reference: str, digest: str) -> str:
    """Pull ``reference`` by digest through 127.0.0.1 with the lab's client login."""
    registry = _registry(state)
    name = reference.rsplit(":", 1)[0].replace(registry["host"], registry["local"], 1)
    pinned = f"{name}@{digest}"
    env = {**os.environ, "DOCKER_CONFIG": str(lab.directory.resolve() / "docker-client")}
    subprocess.run(["docker", "pull", "-q", pinned], env=env, check=True, capture_output=True)
    return pinned


def test_good_releases_run_a_tf_op_and_the_broken_one_fails_import(lab_of, test_lab: Lab) -> None:
    state = lab_of(1, images=True)
    lock, _ = read_lock(Path(state.lock))
    host = _registry(state)["host"]
    for release in RELEASES:
        reference = f"{host}/{REPOSITORY}:{release.tag}"
        pinned = _pull(state, test_lab, reference, lock.images[reference].digest)
        result = subprocess.run(
            ["docker", "run", "--rm", pinned, "python", "-c", TF_OP],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if release.broken:
            assert result.returncode != 0
            assert "ImportError" in result.stderr and "broken on purpose" in result.stderr
        else:
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip().splitlines()[-1] == "12.0"


def _wait(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_dev_image_serves_key_only_ssh_and_jupyter_with_a_file_token(
    lab_of, test_lab: Lab, tmp_path: Path
) -> None:
    state = lab_of(1, images=True)
    lock, _ = read_lock(Path(state.lock))
    reference = f"{_registry(state)['host']}/{REPOSITORY}:{RELEASES[0].tag}"
    pinned = _pull(state, test_lab, reference, lock.images[reference].digest)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "k"], check=True
    )
    # The image runs as the user tfenv names, with the accounts tfenv writes.
    for directory in ("keys", "home"):
        (tmp_path / directory).mkdir(mode=0o700)
        os.chown(tmp_path / directory, 1234, 1234)
    (tmp_path / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nalice:x:1234:1234::/home/alice:/bin/bash\n"
    )
    (tmp_path / "group").write_text("root:x:0:\nalice:x:1234:\n")
    token = "tok-" + tmp_path.name.replace("_", "")[-20:] + "x" * 8
    token_file = tmp_path / "jupyter_token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o444)
    name = f"{test_lab.name}-devimage"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    run = [
        "docker", "run", "-d", "--name", name, "--label", test_lab.label,
        "--user", "1234:1234", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-e", "HOME=/home/alice", "-e", "JUPYTER_TOKEN_FILE=/run/secrets/jupyter_token",
        "-v", f"{tmp_path / 'passwd'}:/etc/passwd:ro",
        "-v", f"{tmp_path / 'group'}:/etc/group:ro",
        "-v", f"{tmp_path / 'home'}:/home/alice",
        "-v", f"{tmp_path / 'k.pub'}:/etc/tfenv/authorized_keys:ro",
        "-v", f"{tmp_path / 'keys'}:/etc/tfenv/ssh-host-keys",
        "-v", f"{token_file}:/run/secrets/jupyter_token:ro",
        "-p", "127.0.0.1::2222", "-p", "127.0.0.1::8888", pinned,
    ]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True)
    try:
        ports = {}
        for inner in ("2222", "8888"):
            out = subprocess.run(
                ["docker", "port", name, f"{inner}/tcp"], capture_output=True, text=True
            )
            ports[inner] = out.stdout.split()[0].rsplit(":", 1)[1]
        base = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-p", ports["2222"]]  # fmt: skip

        def ssh(user: str, *extra: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [*base, *extra, f"{user}@127.0.0.1", "id -u; id -g; python -c 'import sys'"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        _wait(lambda: ssh("alice", "-i", str(tmp_path / "k")).returncode == 0)
        assert ssh("alice", "-i", str(tmp_path / "k")).stdout.split() == ["1234", "1234"]
        assert "Permission denied" in ssh("root", "-i", str(tmp_path / "k")).stderr
        no_key = ssh(
            "alice", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"
        )
        assert "Permission denied (publickey)" in no_key.stderr

        def jupyter(headers: list[str]) -> str:
            out = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    *headers,
                    f"http://127.0.0.1:{ports['8888']}/api/status",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            return out.stdout

        _wait(lambda: jupyter([]) in ("200", "403"))
        assert jupyter(["-H", f"Authorization: token {token}"]) == "200"
        assert jupyter([]) == "403"
        assert jupyter(["-H", "Authorization: token wrong"]) == "403"
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        assert "ServerApp" in logs.stderr + logs.stdout
        assert token not in logs.stdout + logs.stderr
        inspect = subprocess.run(["docker", "inspect", name], capture_output=True, text=True)
        assert token not in inspect.stdout
        top = subprocess.run(["docker", "top", name, "-eo", "uid,pid,args"], capture_output=True,
                             text=True, check=True).stdout.splitlines()  # fmt: skip
        assert len(top) > 3 and all(line.split()[0] == "1234" for line in top[1:]), top
        # A new home gets the image's skeleton files.
        assert (tmp_path / "home" / ".bashrc").is_file()
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
