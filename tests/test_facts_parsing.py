"""The wide facts' parsers on hand-made output: each section's edge cases
(missing, blank, malformed, odd characters), read into exact values."""

from __future__ import annotations

import json
import time

import pytest

from tfenv.facts.gpu import (
    SMI_TIMEOUT,
    Gpu,
    GpuHost,
    GpuHostState,
    GpuInContainer,
    Package,
    gpu_host,
    parse,
)
from tfenv.facts.sections import MARK, read_state, split_sections
from tfenv.facts.tf_node import (
    MountUnit,
    ObservedContainer,
    SealedFile,
    TfNode,
    TfNodeState,
    reduce_inspect,
    tf_node,
)
from tfenv.facts.tf_node import parse as parse_tf_node


def output(**sections: list[str]) -> list[str]:
    """Fact output with a marker per section (``smi_rc`` for ``smi-rc``)."""
    lines: list[str] = []
    for name, body in sections.items():
        lines.append(MARK + name.replace("_", "-"))
        lines.extend(body)
    return lines


SMI_OK = "0, NVIDIA H100 80GB HBM3, GPU-aaaa, 81559, 550.127.05, Enabled, 00000000:18:00.0"


# --- sections ---------------------------------------------------------------


def test_sections_split_on_markers_and_every_name_is_present() -> None:
    lines = [
        "stray line before any marker",
        f"{MARK}a",
        "1",
        "2",
        f"{MARK} b ",
        "3",
        f"{MARK}a",
        "4",
    ]
    assert split_sections(lines, ("a", "b", "c")) == {
        "a": ["1", "2", "4"],
        "b": ["3"],
        "c": [],
    }


def test_a_section_nobody_asked_for_is_kept() -> None:
    lines = [f"{MARK}new", "x", "y", f"{MARK}a", "1"]
    assert split_sections(lines, ("a",)) == {"a": ["1"], "new": ["x", "y"]}


class FakeHost:
    """A host whose fact is injected, as pyinfra's fixture tests do."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.asked: list[type] = []

    def get_fact(self, fact: type) -> object:
        self.asked.append(fact)
        return self.value


def test_a_fact_is_read_as_its_state_whether_parsed_or_injected_as_json() -> None:
    parsed = parse(output(kernel=["6.1.0-28-amd64"]))
    host = FakeHost(parsed)
    assert read_state(host, GpuHost, GpuHostState) is parsed
    assert gpu_host(host) is parsed
    assert host.asked == [GpuHost, GpuHost]
    from_json = gpu_host(FakeHost(parsed.to_json()))
    assert from_json == parsed and from_json is not parsed
    node = TfNodeState(docker="ok")
    assert tf_node(FakeHost(node)) is node
    assert tf_node(FakeHost({"docker": "down"})) == TfNodeState(docker="down")


# --- GpuHost: OS, kernel ----------------------------------------------------


def test_nothing_printed_reads_as_a_bare_host() -> None:
    state = parse([])
    assert state == GpuHostState()
    assert (state.os_id, state.os_version, state.os_codename, state.kernel) == ("", "", "", "")
    assert state.driver_state == "absent"
    assert state.secure_boot is None and state.clock_skew is None
    assert parse(output(os=[], kernel=[], smi=[], smi_rc=[])) == GpuHostState()


def test_os_release_values_are_unquoted_and_kept_exactly() -> None:
    state = parse(
        output(
            os=[
                'ID="Xos"',
                " VERSION_ID = 12.4X ",
                'VERSION_CODENAME="X=Y"',
                "no equals sign here",
                "",
            ],
            kernel=["  6.8.0-49-generic  ", "ignored"],
        )
    )
    assert state.os_id == "Xos"
    assert state.os_version == "12.4X"
    assert state.os_codename == "X=Y"  # split at the first '='
    assert state.kernel == "6.8.0-49-generic"


# --- GpuHost: nvidia-smi ------------------------------------------------------


def test_gpus_are_read_from_their_csv_lines() -> None:
    state = parse(
        output(
            smi=[
                "a line that is no GPU",
                SMI_OK,
                "1, NVIDIA A100, GPU-bbbb, [N/A], 550.127.05, Disabled, 00000000:2A:00.0",
            ],
            smi_rc=["0"],
        )
    )
    assert state.driver_state == "ok"
    assert state.driver_version == "550.127.05"
    assert state.smi_error is None
    assert state.gpus == [
        Gpu(0, "NVIDIA H100 80GB HBM3", "GPU-aaaa", 81559, "00000000:18:00.0", True),
        Gpu(1, "NVIDIA A100", "GPU-bbbb", 0, "00000000:2A:00.0", False),  # MIG: no memory
    ]


def test_without_an_exit_code_nvidia_smi_is_absent() -> None:
    state = parse(output(smi=["whatever"]))
    assert state.driver_state == "absent"
    assert state.smi_error is None
    assert parse(output(smi=[], smi_rc=["absent"])).driver_state == "absent"


def test_a_hung_nvidia_smi_is_a_timeout() -> None:
    state = parse(output(smi=[], smi_rc=["124"]))
    assert state.driver_state == "timeout"
    assert state.smi_error == (
        f"nvidia-smi did not answer within {SMI_TIMEOUT} s: a hung GPU or driver "
        "(look for Xid errors in dmesg)"
    )


MISMATCH = [
    "Failed to initialize NVML: Driver/library version mismatch",
    "NVML library version: 550.144",
]


@pytest.mark.parametrize(
    ("rc", "lines", "driver_state", "nvml", "error"),
    [
        ("18", MISMATCH, "mismatch", "550.144", MISMATCH[0]),
        ("255", MISMATCH, "mismatch", "550.144", MISMATCH[0]),  # the words alone suffice
        ("18", ["Failed to initialize NVML"], "mismatch", None, "Failed to initialize NVML"),
        ("18", [], "mismatch", None, "nvidia-smi exited 18"),
        (
            "9",
            ["NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."],
            "not-loaded",
            None,
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        ),
        ("9", [], "not-loaded", None, "nvidia-smi exited 9"),
        (
            "255",
            ["", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."],
            "not-loaded",
            None,
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        ),
        ("3", ["Unable to determine the device handle"], "error", None, None),
        ("1", [], "error", None, "nvidia-smi exited 1"),
    ],
)
def test_nvidia_smi_failures(
    rc: str, lines: list[str], driver_state: str, nvml: str | None, error: str | None
) -> None:
    state = parse(output(smi=lines, smi_rc=[rc]))
    assert state.driver_state == driver_state
    assert state.nvml_version == nvml
    assert state.smi_error == (error or lines[0])
    assert state.gpus == [] and state.driver_version is None


# --- GpuHost: module, nouveau, secure boot, packages, holds ------------------


def test_the_loaded_module() -> None:
    open_line = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.127.05  Release Build"
    closed_line = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.216.01  Tue Oct 1 2024"
    state = parse(output(module=[open_line, "GCC version: 12"]))
    assert (state.module_version, state.module_flavour) == ("550.127.05", "open")
    state = parse(output(module=[closed_line]))
    assert (state.module_version, state.module_flavour) == ("535.216.01", "proprietary")
    assert parse(output(module=[""])).module_version is None


@pytest.mark.parametrize(
    ("loaded", "expected"),
    [([], False), (["0"], False), (["1"], True), (["  2 "], True), (["x"], False), ([""], False)],
)
def test_nouveau_loaded(loaded: list[str], expected: bool) -> None:
    assert parse(output(nouveau_loaded=loaded)).nouveau_loaded is expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [([], None), (["legacy"], None), (["", "1"], True), (["0"], False), (["7", "1"], True)],
)
def test_secure_boot(lines: list[str], expected: bool | None) -> None:
    assert parse(output(secureboot=lines)).secure_boot is expected


def test_packages_and_their_status() -> None:
    state = parse(
        output(
            packages=[
                "nvidia-driver\t550.127.05-1\thi ",
                "docker-ce\t\tun ",
                "nvidia-kernel-dkms\t535.1-1\trc ",
                "nfs-common\t1:2.6.2-4\t",  # no status: not installed
                "not\ta package line",
            ],
            holds=[" nvidia-driver ", "", "cuda-drivers"],
        )
    )
    assert state.packages == {
        "nvidia-driver": Package("550.127.05-1", True),
        "nvidia-kernel-dkms": Package("535.1-1", False),
        "nfs-common": Package("1:2.6.2-4", False),
    }
    assert state.installed("nvidia-driver") == "550.127.05-1"
    assert state.installed("nvidia-kernel-dkms") is None
    assert state.installed("docker-ce") is None
    assert state.holds == ["cuda-drivers", "nvidia-driver"]


# --- GpuHost: daemon.json, docker runtimes, toolkit, reboot ------------------


def test_daemon_json() -> None:
    assert parse(output(daemon_json=["", ""])).daemon_json is None
    state = parse(output(daemon_json=["{", '  "bip": "172.31.0.1/24"', "}"]))
    assert state.daemon_json == {"bip": "172.31.0.1/24"}
    assert state.daemon_json_error is None
    state = parse(output(daemon_json=["[1, 2]"]))
    assert (state.daemon_json, state.daemon_json_error) == (None, "not a JSON object")
    state = parse(output(daemon_json=["{", '  "bip": ', "}"]))
    assert state.daemon_json is None
    assert state.daemon_json_error == "invalid JSON: Expecting value (line 3)"


def test_docker_runtimes() -> None:
    state = parse(
        output(docker_runtimes=['{"runc":{"path":"runc"},"nvidia":{}}', "WARNING: no swap limit"])
    )
    assert state.docker_runtimes == ["nvidia", "runc"]
    assert state.docker_error is None
    assert parse(output(docker_runtimes=[])).docker_runtimes is None
    assert parse(output(docker_runtimes=[])).docker_error is None


def test_docker_not_answering_says_why() -> None:
    long_line = "permission denied while trying to connect to the Docker daemon socket " * 6
    state = parse(output(docker_runtimes=[long_line, "second line"]))
    assert state.docker_runtimes is None
    assert state.docker_error == long_line[:300]
    assert parse(output(docker_runtimes=["daemon down"])).docker_error == "daemon down"
    garbled = "{" + "x" * 300
    state = parse(output(docker_runtimes=[garbled]))
    assert state.docker_runtimes is None
    assert state.docker_error == f"unreadable docker info output: {garbled[:200]}"


def test_toolkit_and_reboot() -> None:
    state = parse(output(toolkit=["NVIDIA Container Toolkit CLI version 1.17.3"]))
    assert state.toolkit_version == "1.17.3"
    assert parse(output(toolkit=["nvidia-ctk: not found"])).toolkit_version is None
    assert parse(output(reboot_required=["*** System restart required ***", "yes"])).reboot_required
    assert not parse(output(reboot_required=[])).reboot_required


# --- GpuHost: files, keyrings, clock ------------------------------------------


def test_apt_files_are_read_by_header() -> None:
    state = parse(
        output(
            apt_sources=[
                "sed: a warning before any file",
                "== /etc/apt/sources.list.d/cuda.list",
                "deb http://a/ /",
                "== /etc/apt/sources.list.d/empty.list",
                "== /etc/apt/sources.list.d/docker.sources",
                "Types: deb",
                "",
            ],
            apt_tfenv_config=["== /etc/apt/preferences.d/tfenv-nvidia", "Pin: version 550.*"],
        )
    )
    assert state.apt_sources == {
        "/etc/apt/sources.list.d/cuda.list": "deb http://a/ /\n",
        "/etc/apt/sources.list.d/empty.list": "",
        "/etc/apt/sources.list.d/docker.sources": "Types: deb\n\n",
    }
    assert state.apt_config == {"/etc/apt/preferences.d/tfenv-nvidia": "Pin: version 550.*\n"}


def test_keyrings() -> None:
    state = parse(
        output(
            keyrings=[
                "aaaa  /usr/share/keyrings/cuda  archive.gpg",  # a path may hold two spaces
                "bbbb  /etc/apt/keyrings/docker.asc ",
                "no digest here",
            ]
        )
    )
    assert state.keyrings == {
        "/usr/share/keyrings/cuda  archive.gpg": "aaaa",
        "/etc/apt/keyrings/docker.asc": "bbbb",
    }


def test_the_clock_ignores_a_blank_line_after_it() -> None:
    assert parse(output(clock=["1800000100", ""]), now=1800000000.0).clock_skew == 100
    assert parse(output(clock=["1800000100"])).clock_skew is None  # no time of ours to compare


def test_the_fact_compares_the_clock_with_this_machines_now() -> None:
    state = GpuHost().process(output(clock=[str(int(time.time()))]))
    assert state.clock_skew is not None and abs(state.clock_skew) <= 2


def test_gpu_host_state_round_trips_through_json() -> None:
    state = parse(
        output(
            smi=[SMI_OK],
            smi_rc=["0"],
            packages=["nvidia-driver\t550.127.05-1\thi "],
        )
    )
    data = json.loads(json.dumps(state.to_json()))
    assert data["gpus"][0]["memory_mib"] == 81559
    assert data["packages"] == {"nvidia-driver": {"version": "550.127.05-1", "installed": True}}
    assert GpuHostState.from_json(data) == state


# --- GpuInContainer ---------------------------------------------------------


def test_gpu_in_container_runs_nvidia_smi_in_a_throwaway_container() -> None:
    command = GpuInContainer().command("registry.test/cuda:12.4 it's")
    assert command.get_raw_value() == (
        "tfenv_i=0; until docker info >/dev/null 2>&1; do tfenv_i=$((tfenv_i+1)); "
        '[ "$tfenv_i" -lt 60 ] || break; sleep 1; done ; '
        "timeout 120 docker run --rm --pull never --network none --gpus all "
        "'registry.test/cuda:12.4 it'\"'\"'s' nvidia-smi -L 2>&1; echo \"rc=$?\""
    )


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["GPU 0: NVIDIA H100 (UUID: GPU-aaaa)", "", "  ", "GPU 1: NVIDIA H100", "rc=0"],
            {"rc": 0, "lines": ["GPU 0: NVIDIA H100 (UUID: GPU-aaaa)", "GPU 1: NVIDIA H100"]},
        ),
        (["docker: unknown flag", "rc=125"], {"rc": 125, "lines": ["docker: unknown flag"]}),
        (["rc=x"], {"rc": -1, "lines": []}),
        (["rc=-3"], {"rc": -1, "lines": []}),
        (["rc=1", "killed"], {"rc": -1, "lines": ["rc=1", "killed"]}),  # not last: no code
        ([], {"rc": -1, "lines": []}),
    ],
)
def test_gpu_in_container_output(lines: list[str], expected: dict) -> None:
    assert GpuInContainer().process(lines) == expected


# --- TfNode -----------------------------------------------------------------


def test_docker_state() -> None:
    assert parse_tf_node([]).docker == "absent"
    assert parse_tf_node(output(docker=[])).docker == "absent"
    assert parse_tf_node(output(docker=["  "])).docker == "absent"
    assert parse_tf_node(output(docker=["down "])).docker == "down"
    assert TfNode().process(output(docker=["ok"])).docker == "ok"


def test_sealed_files() -> None:
    state = parse_tf_node(
        output(
            sealed=[
                "a line without tabs",
                "/etc/tfenv/a\tseal-a \tintact\t400 0 0",
                "/etc/tfenv/b\tseal-b\tmissing\t",
                "/etc/tfenv/c\tseal-c\taltered\t600 2001 2001",
            ]
        )
    )
    assert state.sealed == {
        "/etc/tfenv/a": SealedFile("seal-a", "intact", "400", 0, 0),
        "/etc/tfenv/b": SealedFile("seal-b", "missing", "", -1, -1),
        "/etc/tfenv/c": SealedFile("seal-c", "altered", "600", 2001, 2001),
    }


def test_certs_and_images() -> None:
    state = parse_tf_node(
        output(
            certs=["cccc  /etc/docker/certs.d/reg  test/ca.crt", "no digest"],
            images=[
                "registry.test/ml/tf@sha256:" + "a" * 64 + "\tsha256:" + "1" * 64,
                "registry.test/ml/tf@<none>\tsha256:" + "2" * 64,
            ],
        )
    )
    assert state.certs == {"/etc/docker/certs.d/reg  test/ca.crt": "cccc"}
    assert state.images == {"registry.test/ml/tf@sha256:" + "a" * 64: "sha256:" + "1" * 64}
    assert state.has_image("registry.test/ml/tf@sha256:" + "a" * 64)


def test_an_inspect_entry_with_nothing_in_it() -> None:
    container = reduce_inspect({})
    assert (container.name, container.id, container.image_id) == ("", "", "")
    assert (container.running, container.status, container.health) == (False, "", None)
    assert (container.labels, container.started_at, container.image) == ({}, "", "")


def test_an_inspect_entry() -> None:
    container = reduce_inspect(
        {
            "Name": "/Xdev-a",
            "Id": "c0ffee",
            "Image": "sha256:" + "1" * 64,
            "State": {
                "Running": True,
                "Status": "running",
                "Health": {"Status": "healthy"},
                "StartedAt": "2026-11-27T10:00:00Z",
            },
            "Config": {"Image": "registry.test/ml/tf:2.17.0", "Labels": {"tfenv.managed": "true"}},
        }
    )
    assert (container.name, container.id, container.image_id) == (
        "Xdev-a",
        "c0ffee",
        "sha256:" + "1" * 64,
    )
    assert (container.running, container.status, container.health) == (True, "running", "healthy")
    assert container.labels == {"tfenv.managed": "true"}
    assert container.started_at == "2026-11-27T10:00:00Z"
    assert container.image == "registry.test/ml/tf:2.17.0"


INSPECT = [{"Name": "/dev-a", "Id": "c1", "State": {"Running": True, "Status": "running"}}]


def test_containers_and_what_keeps_them_busy() -> None:
    state = parse_tf_node(
        output(
            containers=json.dumps(INSPECT, indent=1).splitlines(),
            busy=[
                "dev-a\tssh alice pts/0",
                "dev-a\tgpu python\ttrain.py",  # what may hold a tab
                "ghost\tssh bob",  # not a tfenv container: ignored
                "dev-a\t",
                "dev-a\tchecked",
            ],
        )
    )
    assert list(state.containers) == ["dev-a"]
    dev_a = state.containers["dev-a"]
    assert dev_a.busy == ["ssh alice pts/0", "gpu python\ttrain.py"]
    assert dev_a.busy_checked is True
    assert state.containers_error is None
    unchecked = parse_tf_node(output(containers=[json.dumps(INSPECT)]))
    assert unchecked.containers["dev-a"].busy_checked is False


def test_unreadable_inspect_output() -> None:
    state = parse_tf_node(output(containers=["[{not json"]))
    assert state.containers == {}
    assert state.containers_error == (
        "unreadable docker inspect output: "
        "Expecting property name enclosed in double quotes: line 1 column 3 (char 2)"
    )


def test_mount_units() -> None:
    state = parse_tf_node(
        output(
            units=[
                "grep: a warning before any unit",
                "== state stray",
                "== /etc/systemd/system/mnt-ckpt.mount",
                "[Mount]",
                "What=nfs.test:/export",
                "== state active",
                "== /etc/systemd/system/mnt-data.mount",
                "[Mount]",
            ]
        )
    )
    assert state.units == {
        "/etc/systemd/system/mnt-ckpt.mount": MountUnit(
            "[Mount]\nWhat=nfs.test:/export\n", "active"
        ),
        # the listing stopped before its state: not known
        "/etc/systemd/system/mnt-data.mount": MountUnit("[Mount]\n", ""),
    }


def test_what_is_mounted_where() -> None:
    state = parse_tf_node(
        output(
            mounted=[
                "/ /dev/sda1 ext4",
                "/mnt/my\\x20ckpt nfs.test:/export/a\\x20b nfs4",
                "/run/user/0  tmpfs",  # no source
                "/short line",
            ]
        )
    )
    assert state.mounted == {
        "/": ("/dev/sda1", "ext4"),
        "/mnt/my ckpt": ("nfs.test:/export/a b", "nfs4"),
        "/run/user/0": ("", "tmpfs"),
    }


def test_tf_node_state_round_trips_through_json() -> None:
    state = parse_tf_node(
        output(
            docker=["ok"],
            sealed=["/etc/tfenv/a\tseal\tintact\t400 0 0"],
            containers=[json.dumps(INSPECT)],
            busy=["dev-a\tchecked"],
            units=["== /etc/systemd/system/m.mount", "[Mount]", "== state active"],
            mounted=["/mnt/m nfs:/x nfs4"],
        )
    )
    data = json.loads(json.dumps(state.to_json()))
    assert data["containers"]["dev-a"]["busy_checked"] is True
    back = TfNodeState.from_json(data)
    assert back == state
    assert isinstance(back.containers["dev-a"], ObservedContainer)
    assert back.mounted["/mnt/m"] == ("nfs:/x", "nfs4")
