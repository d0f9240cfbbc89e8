"""``tfenv image build`` against the test lab's real registry and Docker engine.

images/team-dev.yaml (a new version per run) is resolved with ``tfenv image
lock-deps`` and built, gated, pushed and locked once per session (the
``team_image`` fixture; test_lab_tf_node.py runs it as a dev container).
Here: what the pushed image carries, that a rebuild changes nothing, and that
a secret planted in a build file refuses the push.

Image: the team image, built over the lab's TensorFlow base (the image is the subject).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from lab_fixtures import team_spec, tfenv_cli

from tfenv.images.registry import RegistryClient, RegistryError
from tfenv.lab.fleet import Lab
from tfenv.model.secrets import SecretValue

pytestmark = pytest.mark.lab


def secrets_of(state) -> dict[str, str]:
    return {
        "lab_registry_password": Path(state.registry["password_file"]).read_text().strip(),
        "jupyter_token_dev": Path(state.secrets["jupyter_token_dev"]).read_text().strip(),
    }


def client(state) -> RegistryClient:
    return RegistryClient(
        state.registry["local"],
        username=state.registry["username"],
        password=SecretValue("pw", secrets_of(state)["lab_registry_password"]),
        ca_file=Path(state.registry["ca_file"]),
    )


def docker(lab: Lab, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {"DOCKER_CONFIG": str(lab.directory / "docker-client"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["docker", *args], env=env, capture_output=True, check=True, **kwargs)


@pytest.fixture(scope="module")
def pulled(team_image, lab_of, test_lab: Lab):
    """The pushed image, pulled back by digest through the registry."""
    state = lab_of(1, images=True)
    reference, digest, _, _ = team_image
    local = f"{state.registry['local']}/team/tf-dev@{digest}"
    docker(test_lab, "pull", "--quiet", local)
    return state, local, reference, digest


def test_the_pushed_image_is_locked_labelled_and_runs_as_a_user(
    pulled, team_image, test_lab: Lab
) -> None:
    state, local, reference, digest = pulled
    output = team_image[2]
    lock = Path(state.lock).read_text()
    assert f"{reference}:\n    digest: {digest}" in lock, lock
    inspect = json.loads(docker(test_lab, "image", "inspect", local).stdout)[0]
    config = inspect["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == [
        "/usr/bin/tini", "--", "/usr/local/bin/tfenv-dev-entrypoint",
    ]  # fmt: skip
    labels = config["Labels"]
    base = f"{state.registry['host']}/tfenv/tensorflow:2.17.1-lab2"
    base_digest = client(state).resolve("tfenv/tensorflow", "2.17.1-lab2").digest
    assert labels["org.opencontainers.image.version"] == reference.rsplit(":", 1)[1]
    assert labels["org.opencontainers.image.base.name"] == base
    assert labels["org.opencontainers.image.base.digest"] == base_digest
    assert len(labels["org.opencontainers.image.revision"].split("-")[0]) == 40
    created = time.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(time.mktime(created) - time.mktime(time.gmtime())) < 3600
    # No trivy on this machine: the image says it was not scanned, and so did the build.
    assert labels["tfenv.image.scan"] == "not scanned (trivy is not installed)"
    assert "NO vulnerability scan was done" in output
    assert "secrets  2 value(s) searched in every layer: none found" in output
    # What the spec asked for is inside, run as the user.
    script = (
        "id -u; htop --version | head -1; python -c 'import tqdm; print(tqdm.__version__)'; "
        "head -1 /etc/tfenv-team/README; ls /etc/ssh/ | grep -c host_ || true"
    )
    run = docker(test_lab, "run", "--rm", local, "sh", "-c", script, text=True)
    lines = run.stdout.split("\n")
    assert lines[0] == "1000" and lines[1].startswith("htop 3.2.2"), lines
    assert lines[2] == "4.67.1", lines
    assert lines[3].startswith("This is the team's TF dev image") and lines[4] == "0", lines


def test_no_declared_secret_in_the_history_or_the_layers_the_build_added(
    pulled, test_lab: Lab, tmp_path: Path
) -> None:
    state, local, _, _ = pulled
    lab = test_lab
    values = secrets_of(state)
    history = docker(lab, "history", "--no-trunc", local, text=True).stdout
    assert "tfenv-dev-entrypoint" in history
    assert not [name for name, value in values.items() if value in history]
    # Independently of the gate: unpack the layers added over the base and grep them.
    inspect = json.loads(docker(lab, "image", "inspect", local).stdout)[0]
    base = client(state).resolve("tfenv/tensorflow", "2.17.1-lab2").digest
    base_layers = json.loads(
        docker(lab, "image", "inspect", f"{state.registry['local']}/tfenv/tensorflow@{base}").stdout
    )[0]["RootFS"]["Layers"]
    added = inspect["RootFS"]["Layers"][len(base_layers) :]
    assert added, "the build added no layer"
    archive = tmp_path / "image.tar"
    docker(lab, "save", "--output", str(archive), local)
    found = 0
    with tarfile.open(archive) as saved:
        manifest = json.load(saved.extractfile("manifest.json"))[0]
        for name in manifest["Layers"][len(base_layers) :]:
            with tarfile.open(fileobj=saved.extractfile(name)) as layer:
                for member in layer:
                    if member.isfile():
                        found += 1
                        content = layer.extractfile(member).read()
                        leaked = [n for n, v in values.items() if v.encode() in content]
                        assert not leaked, (member.name, leaked)
    assert found > 5


def test_building_the_same_version_again_changes_nothing(team_image, test_lab: Lab) -> None:
    reference, digest, _, spec = team_image
    again = tfenv_cli(test_lab, "image", "build", str(spec))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{reference} is already built, pushed and locked ({digest}): nothing to do" in (
        again.stdout
    )
    assert "[2/6] Building" not in again.stderr


def test_a_secret_planted_in_a_build_file_refuses_the_push(
    team_image, lab_of, test_lab: Lab, tmp_path: Path
) -> None:
    state = lab_of(1, images=True)
    token = secrets_of(state)["jupyter_token_dev"]
    planted = tmp_path / "notes.txt"
    planted.write_text(f"handy for the demo: {token}\n")
    version = f"v0.{int(time.time())}9"
    spec = team_spec(tmp_path, version, files={"/etc/tfenv-team/notes": str(planted)})
    # Same base and packages as the session's image: its requirements file fits.
    requirements = Path(yaml_field(team_image[3], "pip_requirements")).read_text()
    Path(yaml_field(spec, "pip_requirements")).write_text(requirements)
    lock_before = Path(state.lock).read_bytes()
    result = tfenv_cli(test_lab, "image", "build", str(spec))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "push refused: declared secret values are inside the image" in output
    assert "secret 'jupyter_token_dev' in layer " in output, output
    assert "COPY tfenv-file-0 /etc/tfenv-team/notes" in output
    assert ": /etc/tfenv-team/notes" in output
    assert token not in output
    assert Path(state.lock).read_bytes() == lock_before
    with pytest.raises(RegistryError, match="no such tag"):
        client(state).resolve("team/tf-dev", f"{version}-tf2.17.1")


def yaml_field(path: Path, field: str) -> str:
    import yaml

    return yaml.safe_load(path.read_text())[field]
