"""Lab TensorFlow images: real TF (CPU build from PyPI), sshd and Jupyter.

One shared base (``tf-base.Dockerfile``: Debian, TensorFlow, JupyterLab, the
dev entrypoint) and one small release layer per version on top of it
(``tf-release.Dockerfile``), so a version bump pulls a few KiB. Releases:
two good ones for upgrades and one whose ``import tensorflow`` fails, for
rollback tests. All are pushed to the lab registry; their digests go to the
lab's lock file, which the lab's data uses like any fleet's lock.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tfenv.images.dev_files import DEV_FILES, dev_file
from tfenv.images.lock import LockedImage, dump_lock, read_lock
from tfenv.lab.images import BASE_IMAGE, CLASSIC_BUILD, build_image
from tfenv.lab.progress import say, step
from tfenv.lab.registry import LabRegistry
from tfenv.lab.run import LabError, run

TF_VERSION = "2.17.1"
JUPYTERLAB_VERSION = "4.2.5"
REPOSITORY = "tfenv/tensorflow"
DEBIAN_REPOSITORY = "tfenv/debian"  # small image for checks (GPU visible in a container)
# The scale lab's dev image (--dev-image small): sshd and a SIMULATED TensorFlow.
SMALL_DEV_REPOSITORY = "tfenv/dev-small"
SMALL_DEV_TAG = "lab"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Release:
    tag: str
    broken: bool = False
    simulate: str = ""  # "slow" or "drift": a SIMULATED regression (files/lab-sim-*.py)


RELEASES = (
    Release(f"{TF_VERSION}-lab1"),
    Release(f"{TF_VERSION}-lab2"),
    Release(f"{TF_VERSION}-lab3-broken", broken=True),
    # Healthy, but model calls read x40-70 slower (the rollout's p99 gate; files/lab-sim-slow.py).
    Release(f"{TF_VERSION}-lab4-slow", simulate="slow"),
    # Healthy and fast, but model outputs shifted (the rollout's KL gate).
    Release(f"{TF_VERSION}-lab5-drift", simulate="drift"),
)
SIM_FILES = ("lab-sim-slow.py", "lab-sim-drift.py")


def _file(name: str) -> str:
    return resources.files("tfenv.lab").joinpath(f"files/{name}").read_text()


def ensure_tf_base() -> str:
    """``tfenv-lab/tf-base:<hash>``, built when its inputs change (a few minutes cold)."""
    if not CA_BUNDLE.exists():
        raise LabError(f"{CA_BUNDLE} is missing: apt-get install -y ca-certificates, then retry.")
    files = {name: dev_file(name) for name in DEV_FILES}
    files["build-ca.crt"] = CA_BUNDLE.read_text()
    return build_image(
        "tfenv-lab/tf-base",
        _file("tf-base.Dockerfile"),
        files,
        {"TF_VERSION": TF_VERSION, "JUPYTERLAB_VERSION": JUPYTERLAB_VERSION},
        what=(
            f"the lab TF base image: tensorflow-cpu {TF_VERSION} and JupyterLab "
            f"{JUPYTERLAB_VERSION} from PyPI (a few minutes the first time)"
        ),
        timeout=1800,
        hint="The TF base image needs PyPI (tensorflow-cpu, jupyterlab); check pip works here.",
    )


def ensure_releases(base: str) -> dict[str, str]:
    """Local image per release tag, each one small layer over ``base``."""
    dockerfile = _file("tf-release.Dockerfile")
    files = {name: _file(name) for name in SIM_FILES}
    return {
        release.tag: build_image(
            "tfenv-lab/tf",
            dockerfile,
            files,
            args={
                "BASE": base,
                "RELEASE": release.tag,
                "BROKEN": "1" if release.broken else "",
                "SIMULATE": release.simulate,
            },
            what=f"lab release {release.tag}",
        )
        for release in RELEASES
    }


MODEL_SCRIPT = """
import numpy as np, sys, tensorflow as tf
class Reference(tf.Module):
    def __init__(self):
        rng = np.random.default_rng(7)
        self.w1 = tf.Variable(rng.normal(size=(512, 2048)).astype("float32") * 0.05)
        self.w2 = tf.Variable(rng.normal(size=(2048, 2048)).astype("float32") * 0.03)
        self.w3 = tf.Variable(rng.normal(size=(2048, 10)).astype("float32") * 0.05)
    @tf.function(input_signature=[tf.TensorSpec([None, 512], tf.float32)])
    def serve(self, x):
        h = tf.nn.relu(tf.matmul(tf.nn.relu(tf.matmul(x, self.w1)), self.w2))
        return tf.nn.softmax(tf.matmul(h, self.w3))
model = Reference()
tf.saved_model.save(model, sys.argv[1], signatures={"serving_default": model.serve})
"""


def ensure_reference_model(base: str, exports: Path, container: str = "dev") -> Path:
    """The rollout probe's reference SavedModel (a small fixed classifier) on the lab's
    NFS export, where container ``container`` sees its checkpoints (made once)."""
    target = exports / "checkpoints" / container / "tfenv-canary" / "reference-model"
    stamp = target / f"tfenv-{hashlib.sha256(MODEL_SCRIPT.encode()).hexdigest()[:12]}"
    if stamp.exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with step(f"Saving the reference model for rollout probes to {target}"):
        run(["docker", "run", "--rm", "-v", f"{target.parent.resolve()}:/out", base, "sh", "-c",
             'python3 -c "$0" /out/reference-model && chmod -R a+rX /out', MODEL_SCRIPT],
            timeout=600)  # fmt: skip
    stamp.touch()
    return target


def ensure_small_dev() -> str:
    """``tfenv-lab/dev-small:<hash>``: the scale lab's dev image (seconds to build)."""
    files = {name: dev_file(name) for name in DEV_FILES}
    files["lab-stub-tensorflow.py"] = _file("lab-stub-tensorflow.py")
    return build_image("tfenv-lab/dev-small", _file("dev-small.Dockerfile"), files,
                       what="the scale lab's small dev image (SIMULATED TensorFlow)")  # fmt: skip


def push_all(registry: LabRegistry, lab_dir: Path, dev_image: str = "tf") -> dict[str, LockedImage]:
    """Build (if needed) and push the lab's images; return the lock entries by reference.
    ``dev_image`` "tf": the TF releases (real TensorFlow); "small": the small dev image."""
    if dev_image == "small":
        local = {f"{SMALL_DEV_REPOSITORY}:{SMALL_DEV_TAG}": ensure_small_dev()}
    else:
        base = ensure_tf_base()
        ensure_reference_model(base, lab_dir / "nfs" / "exports")
        local = {f"{REPOSITORY}:{tag}": image for tag, image in ensure_releases(base).items()}
    local[f"{DEBIAN_REPOSITORY}:bookworm"] = BASE_IMAGE
    # The push logs in with the lab's own client config, never ~/.docker.
    client_env = {**CLASSIC_BUILD, "DOCKER_CONFIG": str((lab_dir / "docker-client").resolve())}
    run(
        ["docker", "login", "--username", registry.username, "--password-stdin", registry.local],
        input=registry.password().reveal() + "\n",
        env=client_env,
        hint="The lab registry refused the lab's own password: tfenv lab down && tfenv lab up",
    )
    client = registry.client()
    locked: dict[str, LockedImage] = {}
    with step(f"Pushing {len(local)} lab image(s) to the lab registry (shared layers once)"):
        for number, (reference, image) in enumerate(sorted(local.items()), 1):
            target = f"{registry.local}/{reference}"
            run(["docker", "tag", image, target])
            run(["docker", "push", target], env=client_env, timeout=1800)
            run(["docker", "rmi", target])  # keep only the lab's own local tags
            repository, tag = reference.rsplit(":", 1)
            resolved = client.resolve(repository, tag)
            say(f"    [{number}/{len(local)}] {registry.host}/{reference}  {resolved.digest}")
            locked[f"{registry.host}/{reference}"] = LockedImage(
                f"{registry.host}/{reference}", resolved.digest
            )
    return locked


def write_lab_lock(path: Path, images: dict[str, LockedImage]) -> None:
    """The lab's images, plus what ``tfenv image build`` added to the lab's lock before
    (team images stay locked across ``lab down``/``up``, as their registry blobs stay)."""
    if path.exists():
        current, issues = read_lock(path)
        if not issues:
            ours = {f"{REPOSITORY}:", f"{DEBIAN_REPOSITORY}:", f"{SMALL_DEV_REPOSITORY}:"}
            kept = {ref: image for ref, image in current.images.items()
                    if not any(part in ref for part in ours)}  # fmt: skip
            images = {**kept, **images}
    text = dump_lock(images).replace(
        "# Written by `tfenv lock`", "# Written by `tfenv lab up` for the lab registry", 1
    )
    path.write_text(text)
