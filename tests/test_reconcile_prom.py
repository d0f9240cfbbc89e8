"""The node_exporter textfile: exact values, and clean under the real promtool."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tfenv.reconcile.files import write_atomic
from tfenv.reconcile.prom import escape_label, render_prom
from tfenv.reconcile.report import AREAS, HostResult, Item, Report

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def three_hosts(shard: str | None = None) -> Report:
    """One clean host, one drifted container field, one host not reached."""
    return Report(
        inventory="inventories/prod.py",
        started="2025-03-10T02:00:00Z",
        finished="2025-03-10T02:01:23Z",
        duration_s=83.4,
        shard=shard,
        hosts={
            "gpu-01.test": HostResult(name="gpu-01.test", checked=True),
            "gpu-02.test": HostResult(
                name="gpu-02.test",
                checked=True,
                items=[
                    Item(
                        area="containers",
                        field="dev.env",
                        declared="TF_CPP_MIN_LOG_LEVEL=2",
                        observed="TF_CPP_MIN_LOG_LEVEL=0",
                    )
                ],
            ),
            "gpu-03.test": HostResult(name="gpu-03.test", checked=False, error="could not connect"),
        },
    )


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples by (metric, sorted labels); label values unescaped."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, labels, value = match.groups()
        pairs = LABEL.findall(labels or "")
        assert ",".join(f'{k}="{v}"' for k, v in pairs) == (labels or ""), line
        unescaped = tuple(sorted((k, _unescape(v)) for k, v in pairs))
        key = (name.removeprefix("tfenv_reconcile_"), unescaped)
        assert key not in samples, f"duplicate series: {line}"
        samples[key] = float(value)
    return samples


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def test_values() -> None:
    text = render_prom(three_hosts())
    assert text.endswith("\n")
    assert not text.endswith("\n\n")
    samples = parse(text)
    assert samples["last_run_timestamp_seconds", ()] == 1741572083  # 2025-03-10T02:01:23Z
    assert samples["last_run_duration_seconds", ()] == 83.4
    assert samples["last_run_exit_code", ()] == 1
    assert samples["hosts", ()] == 3
    assert samples["host_checked", (("host", "gpu-01.test"),)] == 1
    assert samples["host_checked", (("host", "gpu-02.test"),)] == 1
    assert samples["host_checked", (("host", "gpu-03.test"),)] == 0
    drift = {
        (dict(labels)["host"], dict(labels)["area"]): value
        for (name, labels), value in samples.items()
        if name == "drift_items"
    }
    assert len(drift) == 2 * len(AREAS)  # checked hosts only, every area
    assert drift["gpu-02.test", "containers"] == 1
    assert sum(drift.values()) == 1
    assert not any(host == "gpu-03.test" for host, _ in drift)
    for host in ("gpu-01.test", "gpu-02.test", "gpu-03.test"):
        assert samples["host_needs_a_person", (("host", host),)] == 0


def test_help_and_type_for_every_metric() -> None:
    text = render_prom(three_hosts())
    names = {key[0] for key in parse(text)}
    assert names == {
        "last_run_timestamp_seconds",
        "last_run_duration_seconds",
        "last_run_exit_code",
        "hosts",
        "host_checked",
        "drift_items",
        "host_needs_a_person",
    }
    for name in names:
        assert f"# HELP tfenv_reconcile_{name} " in text
        assert f"# TYPE tfenv_reconcile_{name} gauge\n" in text


def test_exit_code_override_and_needs_a_person() -> None:
    report = three_hosts()
    report.hosts["gpu-03.test"] = HostResult(
        name="gpu-03.test",
        checked=True,
        items=[
            Item(
                area="driver",
                field="nvidia-driver.reboot",
                declared="a",
                observed="b",
                action="person",
                command="sudo reboot",
            ),
            Item(area="driver", field="nvidia-driver.hold", declared="held", observed="not"),
        ],
    )
    samples = parse(render_prom(report))
    assert samples["last_run_exit_code", ()] == 2
    assert samples["host_needs_a_person", (("host", "gpu-03.test"),)] == 1
    assert samples["drift_items", (("area", "driver"), ("host", "gpu-03.test"))] == 2
    assert parse(render_prom(report, exit_code=3))["last_run_exit_code", ()] == 3


def test_shard_label_on_every_series() -> None:
    text = render_prom(three_hosts(shard="2/4"))
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines
    assert all('shard="2/4"' in line for line in lines)
    assert parse(text)["hosts", (("shard", "2/4"),)] == 3


def test_label_values_escaped() -> None:
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    odd = 'gpu"\\\n.test'
    report = Report(
        inventory="inv", started="2025-03-10T02:00:00Z", finished="2025-03-10T02:00:01Z"
    )
    report.hosts[odd] = HostResult(name=odd, checked=True)
    text = render_prom(report)
    assert 'host="gpu\\"\\\\\\n.test"' in text
    assert parse(text)["host_checked", (("host", odd),)] == 1


@pytest.mark.parametrize("shard", [None, "1/2"])
def test_promtool_check_metrics_is_clean(shard: str | None) -> None:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.skip("needs promtool: install the prometheus package (tools/system-packages does)")
    report = three_hosts(shard=shard)
    report.hosts["gpu-04.test"] = HostResult(
        name="gpu-04.test",
        checked=True,
        items=[
            Item(
                area="nfs",
                field="ckpt.mounted",
                declared="yes",
                observed="no",
                action="person",
                command="sudo mount /mnt/ckpt",
            )
        ],
    )
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=render_prom(report),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", output


def test_write_atomic(tmp_path: Path) -> None:
    target = tmp_path / "tfenv_reconcile.prom"
    target.write_text("old\n")
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left
    write_atomic(target, "private\n", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_atomic_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "bad \udc80 surrogate")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
