#!/usr/bin/python3
"""Build the SIMULATED NVIDIA apt repositories for the tfenv lab (run in the image build).

Real package names, versions and dependency shapes of NVIDIA's CUDA repository
for Debian 12 and of the container toolkit repository, carrying the lab's
simulators instead of drivers. Both are flat repositories signed with their
own lab keys, as the real ones are.

    build-repos.py KERNEL_RELEASE   # lab hosts' `uname -r`, for a headers stub
"""

import os
import shutil
import subprocess
import sys
import tempfile

SRC = "/opt/nvidia-sim/src"
OUT = "/srv/apt"
CUDA = f"{OUT}/cuda/repos/debian12/x86_64"
TOOLKIT = f"{OUT}/libnvidia-container/stable/deb/amd64"
DRIVERS = ["550.127.05", "550.144.03", "560.35.03", "550.163.01"]
# A bad release: its module does not load after the reboot (a DKMS build that failed,
# a module the kernel refuses): nvidia-smi then "couldn't communicate with the driver".
BROKEN = {"550.163.01"}
TOOLKITS = ["1.17.3", "1.17.8"]
SIM_NOTE = "SIMULATED by the tfenv lab: no driver inside, see tfenv/lab/sim."

MODULE_UNIT = """[Unit]
Description=Load the NVIDIA kernel module (SIMULATED, tfenv lab)
DefaultDependencies=no
Before=nvidia-persistenced.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/nvidia-sim/load-module

[Install]
WantedBy=multi-user.target
"""
PERSISTENCED_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon (SIMULATED, tfenv lab)
After=nvidia-sim-module.service

[Service]
Type=simple
ExecStart=/usr/bin/nvidia-persistenced
Restart=no

[Install]
WantedBy=multi-user.target
"""


def enable(unit):
    return (
        "mkdir -p /etc/systemd/system/multi-user.target.wants\n"
        f"ln -sf /lib/systemd/system/{unit} /etc/systemd/system/multi-user.target.wants/{unit}\n"
    )


def package(repo, name, version, *, depends="", files=None, postinst="", extra=None, desc=""):
    """One .deb: ``files`` maps installed path -> (content, mode)."""
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(f"{root}/DEBIAN")
        fields = {
            "Package": name,
            "Version": version,
            "Architecture": "amd64" if files else "all",
            "Maintainer": "tfenv lab <lab@tfenv.test>",
            "Section": "non-free/libs",
            "Priority": "optional",
        }
        if depends:
            fields["Depends"] = depends
        fields.update(extra or {})
        fields["Description"] = f"{desc or name} (SIMULATED)\n {SIM_NOTE}"
        with open(f"{root}/DEBIAN/control", "w") as f:
            f.write("".join(f"{k}: {v}\n" for k, v in fields.items()))
        if postinst:
            with open(f"{root}/DEBIAN/postinst", "w") as f:
                f.write("#!/bin/sh\nset -e\n" + postinst)
            os.chmod(f"{root}/DEBIAN/postinst", 0o755)
        for path, (content, mode) in (files or {}).items():
            target = root + path
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                f.write(content)
            os.chmod(target, mode)
        out = f"{repo}/{name}_{version}_{fields['Architecture']}.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, out],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def src(name):
    with open(f"{SRC}/{name}") as f:
        return f.read()


def driver_packages(v):
    deb = f"{v}-1"
    branch = v.split(".")[0]
    package(
        CUDA,
        "libnvidia-ml1",
        deb,
        files={"/usr/lib/nvidia-sim/version": (v + "\n", 0o644)},
        desc="NVIDIA Management Library (NVML) runtime library",
    )
    package(
        CUDA,
        "nvidia-smi",
        deb,
        depends=f"libnvidia-ml1 (= {deb})",
        files={"/usr/bin/nvidia-smi": (src("nvidia-smi"), 0o755)},
        desc="NVIDIA System Management Interface",
    )
    for flavour, name, other in (
        ("proprietary", "nvidia-kernel-dkms", "nvidia-kernel-open-dkms"),
        ("open", "nvidia-kernel-open-dkms", "nvidia-kernel-dkms"),
    ):
        package(
            CUDA,
            name,
            deb,
            files={
                **(
                    {"/usr/lib/nvidia-sim/module-broken": ("SIMULATED bad release\n", 0o644)}
                    if v in BROKEN
                    else {}
                ),
                "/usr/lib/nvidia-sim/module-version": (v + "\n", 0o644),
                "/usr/lib/nvidia-sim/module-flavour": (flavour + "\n", 0o644),
                "/usr/lib/nvidia-sim/load-module": (src("nvidia-sim-load-module"), 0o755),
                "/lib/systemd/system/nvidia-sim-module.service": (MODULE_UNIT, 0o644),
            },
            postinst=enable("nvidia-sim-module.service"),
            extra={
                "Conflicts": other,
                "Replaces": other,
                "Provides": f"nvidia-kernel-dkms-any (= {v})",
            },
            desc=f"NVIDIA binary kernel module DKMS source ({flavour} flavor)",
        )
    package(
        CUDA,
        "nvidia-persistenced",
        deb,
        files={
            "/usr/bin/nvidia-persistenced": (src("nvidia-persistenced"), 0o755),
            "/lib/systemd/system/nvidia-persistenced.service": (PERSISTENCED_UNIT, 0o644),
        },
        postinst=enable("nvidia-persistenced.service")
        + "systemctl start nvidia-persistenced.service 2>/dev/null || true\n",
        desc="daemon to maintain persistent software state in the NVIDIA driver",
    )
    package(
        CUDA,
        "nvidia-driver",
        deb,
        depends=(
            f"nvidia-smi (= {deb}), libnvidia-ml1 (= {deb}), "
            f"nvidia-kernel-dkms (= {deb}) | nvidia-kernel-open-dkms (= {deb}), "
            f"nvidia-persistenced (= {deb})"
        ),
        desc="NVIDIA metapackage",
    )
    # Like the real one: no upper bound, so it happily pulls a newer branch.
    package(
        CUDA,
        f"cuda-drivers-{branch}",
        deb,
        depends=f"nvidia-driver (>= {branch})",
        desc=f"CUDA Driver meta-package, branch {branch}",
    )


def toolkit_packages(v):
    deb = f"{v}-1"
    package(
        TOOLKIT,
        "libnvidia-container1",
        deb,
        # No fake .so: ldconfig would warn about it on every apt run.
        files={"/usr/share/doc/libnvidia-container1/SIMULATED": (SIM_NOTE + "\n", 0o644)},
        desc="NVIDIA container runtime library",
    )
    package(
        TOOLKIT,
        "libnvidia-container-tools",
        deb,
        depends=f"libnvidia-container1 (>= {deb})",
        files={
            "/usr/bin/nvidia-container-cli": (
                f"#!/bin/sh\necho 'cli-version: {v}'\necho 'lib-version: {v}'\n",
                0o755,
            )
        },
        desc="NVIDIA container runtime library (command-line tools)",
    )
    package(
        TOOLKIT,
        "nvidia-container-toolkit-base",
        deb,
        files={
            "/usr/bin/nvidia-ctk": (src("nvidia-ctk").replace("@VERSION@", v), 0o755),
            "/usr/bin/nvidia-container-runtime": (src("nvidia-container-runtime"), 0o755),
            "/usr/bin/nvidia-cdi-hook": ("#!/bin/sh\nexit 0\n", 0o755),
        },
        desc="NVIDIA Container Toolkit Base",
    )
    package(
        TOOLKIT,
        "nvidia-container-toolkit",
        deb,
        depends=(
            f"nvidia-container-toolkit-base (= {deb}), "
            f"libnvidia-container-tools (>= {deb}), libnvidia-container-tools (<< 2.0.0)"
        ),
        files={
            "/usr/bin/nvidia-container-runtime-hook": (src("nvidia-container-runtime-hook"), 0o755)
        },
        desc="NVIDIA Container toolkit",
    )


def sign(repo, home, uid):
    with open(f"{repo}/Packages", "w") as packages:
        subprocess.run(["apt-ftparchive", "packages", "."], cwd=repo, check=True, stdout=packages)
    subprocess.run(["gzip", "-kf", "Packages"], cwd=repo, check=True)
    release = subprocess.run(
        ["apt-ftparchive", "release", "."], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    with open(f"{repo}/Release", "w") as f:
        f.write(release)
    gpg = ["gpg", "--homedir", home, "--batch", "--yes", "--local-user", uid]
    subprocess.run([*gpg, "--clearsign", "-o", f"{repo}/InRelease", f"{repo}/Release"], check=True)
    subprocess.run([*gpg, "-abs", "-o", f"{repo}/Release.gpg", f"{repo}/Release"], check=True)


def make_key(home, uid, keyring, armored):
    os.makedirs(home, mode=0o700, exist_ok=True)
    subprocess.run(
        [
            "gpg",
            "--homedir",
            home,
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    with open(keyring, "wb") as f:
        f.write(
            subprocess.run(
                ["gpg", "--homedir", home, "--export", uid], check=True, capture_output=True
            ).stdout
        )
    with open(armored, "wb") as f:
        f.write(
            subprocess.run(
                ["gpg", "--homedir", home, "--armor", "--export", uid],
                check=True,
                capture_output=True,
            ).stdout
        )


def main():
    kernel = sys.argv[1]
    for repo in (CUDA, TOOLKIT):
        os.makedirs(repo, exist_ok=True)
    for version in DRIVERS:
        driver_packages(version)
    # The lab's kernel is this machine's: no distribution ships its headers.
    package(
        CUDA, f"linux-headers-{kernel}", "1.0-1", desc=f"headers stub for the lab kernel {kernel}"
    )
    for version in TOOLKITS:
        toolkit_packages(version)
    os.makedirs(f"{OUT}/keys", exist_ok=True)
    home = tempfile.mkdtemp()
    cuda_uid = "tfenv lab CUDA repository (SIMULATED) <cuda@lab.tfenv.test>"
    toolkit_uid = "tfenv lab container toolkit repository (SIMULATED) <toolkit@lab.tfenv.test>"
    make_key(home, cuda_uid, f"{OUT}/keys/cuda-archive-keyring.gpg", f"{CUDA}/lab-cuda.pub")
    make_key(
        home,
        toolkit_uid,
        f"{OUT}/keys/nvidia-container-toolkit-keyring.gpg",
        f"{OUT}/libnvidia-container/gpgkey",
    )
    sign(CUDA, home, cuda_uid)
    sign(TOOLKIT, home, toolkit_uid)
    shutil.rmtree(home)  # the private keys leave with the build


if __name__ == "__main__":
    main()
