"""tfenv's operations in pyinfra's fixture style: facts in, exact commands out.

Fixtures live in tests/operations/<module>.<operation>/ (YAML), one host
state each (Debian 12, Ubuntu 22.04, Ubuntu 24.04, the no-op case, errors).
"""

from __future__ import annotations

from pathlib import Path

from pyinfra_testing.operations import make_operation_tests

OPERATIONS = Path(__file__).parent / "operations"

TestSignedRepository = make_operation_tests(
    "tfenv.operations",
    "apt_repository.signed_repository",
    OPERATIONS / "apt_repository.signed_repository",
)
TestPinnedPackages = make_operation_tests(
    "tfenv.operations",
    "pinned_packages.pinned_packages",
    OPERATIONS / "pinned_packages.pinned_packages",
)
TestContainerToolkit = make_operation_tests(
    "tfenv.operations",
    "container_toolkit.container_toolkit",
    OPERATIONS / "container_toolkit.container_toolkit",
)
TestNvidiaDriver = make_operation_tests(
    "tfenv.operations",
    "nvidia_driver.nvidia_driver",
    OPERATIONS / "nvidia_driver.nvidia_driver",
)
TestDockerEngine = make_operation_tests(
    "tfenv.operations",
    "docker_engine.docker_engine",
    OPERATIONS / "docker_engine.docker_engine",
)
TestRegistryLogins = make_operation_tests(
    "tfenv.operations",
    "registry_login.registry_logins",
    OPERATIONS / "registry_login.registry_logins",
)
TestPinnedImage = make_operation_tests(
    "tfenv.operations", "image.pinned_image", OPERATIONS / "image.pinned_image"
)
TestNfsMount = make_operation_tests(
    "tfenv.operations", "nfs_mount.nfs_mount", OPERATIONS / "nfs_mount.nfs_mount"
)
TestClockInSync = make_operation_tests(
    "tfenv.operations", "clock.clock_in_sync", OPERATIONS / "clock.clock_in_sync"
)
