"""tfenv.reconcile.check's pure parts beside pyinfra (--deep's probe results, the
progress line, batches, apply outcomes, results) with run_pyinfra replaced, and
tfenv.reconcile.prom's numbers, times and escaping."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tfenv.reconcile import check
from tfenv.reconcile.check import (
    PROBE_DEPLOY,
    PyinfraRun,
    _read_lines,
    _report_progress,
    apply_hosts,
    batch_size,
    busy_data,
    host_error,
    parse_shard,
    probe_hosts,
    results_of,
)
from tfenv.reconcile.prom import _escape_help, _number, _unix_time, escape_label, render_prom
from tfenv.reconcile.report import AREAS, HostResult, Item, Report


class Pyinfra:
    """run_pyinfra's stand-in: the given runs in turn, and each call's arguments."""

    def __init__(self, *runs: PyinfraRun) -> None:
        self.runs = list(runs)
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> PyinfraRun:
        self.calls.append((args, kwargs))
        return self.runs.pop(0)


# -- --deep ---------------------------------------------------------------------


def test_probe_results_become_person_items(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [
        {"host": "a", "failure": "dev: tf op failed"},
        {"host": "other", "failure": "not targeted"},
        {"host": "b", "error": "ssh timed out"},
        {"host": "a", "passed": ["dev2"]},
        {"failure": "no host"},
        {"host": "a", "failure": "dev3: oom"},
    ]
    fake = Pyinfra(PyinfraRun(0, "probe output", lines))
    monkeypatch.setattr(check, "run_pyinfra", fake)
    found, output = probe_hosts("inv.py", ["a", "b", "c"])
    assert fake.calls == [
        (("inv.py", PROBE_DEPLOY, ["a", "b", "c"]), {"dry": False, "collect": True, "deep": True})
    ]
    assert PROBE_DEPLOY == "deploys/reconcile_probe.py"
    log = "see the container's log: docker logs --tail 50 NAME"
    assert found == {
        "a": [
            Item("containers", "health probe", "passes", "dev: tf op failed", "person", log),
            Item("containers", "health probe", "passes", "dev3: oom", "person", log),
        ],
        "b": [
            Item(
                "containers",
                "health probe",
                "passes",
                "could not run: ssh timed out",
                "person",
                "check the host, then run again",
            )
        ],
        "c": [],
    }
    assert output == "probe output"


# -- progress -------------------------------------------------------------------


def lines_file(tmp_path: Path, *lines: dict | str) -> Path:
    out = tmp_path / "hosts.jsonl"
    out.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return out


def test_progress_counts_hosts_done_and_with_drift(tmp_path: Path) -> None:
    out = lines_file(
        tmp_path,
        {"host": "a", "items": [{"area": "nfs"}]},
        {"host": "b", "items": []},
        {"host": "c", "error": "refused"},
        {"host": "a", "items": []},
        {"host": "d"},
        '{"host": "e", "ite',  # still being written
    )
    told: list[tuple[int, int, int]] = []
    assert _report_progress(out, 9, -1, lambda *a: told.append(a)) == 5
    assert told == [(4, 9, 2)]
    assert _report_progress(out, 9, 5, lambda *a: told.append(a)) == 5  # nothing new: quiet
    assert told == [(4, 9, 2)]
    assert _read_lines(out)[-1] == {"host": "d"}


# -- batches and apply ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "targeted", "size"),
    [("100%", 7, 7), ("50%", 1000, 500), ("1%", 10, 1), ("10%", 101, 11), ("7", 3, 7)],
)
def test_batch_sizes(text: str, targeted: int, size: int) -> None:
    assert batch_size(text, targeted) == size


def test_bad_shard_and_batch_messages() -> None:
    with pytest.raises(ValueError) as caught:
        parse_shard("3/2")
    assert str(caught.value) == "--shard '3/2': expected K/N with 1 <= K <= N, such as 2/3"
    assert parse_shard("2/2") == (2, 2) and parse_shard("10/12") == (10, 12)
    with pytest.raises(ValueError) as caught:
        batch_size("101%", 5)
    assert str(caught.value) == "--batch '101%': expected a number of hosts or a share such as 10%"


def test_busy_data() -> None:
    assert busy_data(True) == ["force_busy=true"] and busy_data(False) == []


def test_apply_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Pyinfra(
        PyinfraRun(0, "[h1] Success\n[h2]  Error: apt failed\n", []),
        PyinfraRun(1, "[h3] Could not connect (refused)\n", []),
    )
    monkeypatch.setattr(check, "run_pyinfra", fake)
    clock = iter([10.0, 14.4, 20.0, 22.6])
    monkeypatch.setattr(check.time, "monotonic", lambda: next(clock))
    said: list[str] = []
    outcome, output = apply_hosts("inv.py", "d.py", ["h1", "h2", "h3"], 2, True, said.append)
    assert outcome == {
        "h1": "applied",
        "h2": "failed: Error: apt failed",
        "h3": "failed: Could not connect (refused)",
    }
    assert output == "[h1] Success\n[h2]  Error: apt failed\n\n[h3] Could not connect (refused)\n"
    assert said == [
        "applying batch 1/2: h1, h2",
        "batch 1/2: 1/2 applied in 4 s",
        "applying batch 2/2: h3",
        "batch 2/2: 0/1 applied in 3 s",
    ]
    data = {"dry": False, "data": ["force_busy=true"]}
    assert fake.calls == [
        (("inv.py", "d.py", ["h1", "h2"]), data),
        (("inv.py", "d.py", ["h3"]), data),
    ]


def test_results_of_a_dry_run() -> None:
    run = PyinfraRun(
        1,
        "[c] Connected\n[c] timed out reading facts\n",
        [
            {
                "host": "a",
                "items": [{"area": "nfs", "field": "f", "declared": "x", "observed": "y"}],
            },
            {"host": "b", "error": "sudo: a password is required"},
            {"host": "z", "items": []},
            {"host": "d"},
        ],
    )
    results, output = results_of(run, ["a", "b", "c", "d"])
    assert output == run.output
    assert results == {
        "a": HostResult("a", True, items=[Item("nfs", "f", "x", "y")]),
        "b": HostResult("b", False, error="sudo: a password is required"),
        "d": HostResult("d", True),
        "c": HostResult("c", False, error="timed out reading facts"),
    }


def test_host_errors_prefer_the_worst_words_and_are_cut_to_500() -> None:
    output = (
        "[h] Connected\n[h] No changes\n[h] refused once\n[h] Error: " + "x" * 600 + "\n[h] later\n"
    )
    assert host_error(output, "h", 1) == ("Error: " + "x" * 600)[:500]
    assert host_error("[h] something\n[h] last words\n", "h", 1) == "last words"
    assert host_error("[h] Success\n", "h", 4) == (
        "pyinfra ended (exit 4) before it finished checking this host; its output is "
        "in pyinfra.log in the state directory"
    )


# -- prom -------------------------------------------------------------------------


@pytest.fixture
def eastern() -> Iterator[None]:
    """A local time zone 5 hours behind UTC (a POSIX TZ string: no tzdata needed)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "EST+5")
        time.tzset()
        yield
    time.tzset()


def test_unix_time(eastern: None) -> None:
    assert _unix_time("2026-11-27T02:30:00Z") == 1795746600
    assert isinstance(_unix_time("2026-11-27T02:30:00Z"), int)
    assert _unix_time("2026-11-27T02:30:00") == 1795746600  # naive: UTC, not local time
    assert _unix_time("2026-11-27T04:30:00+02:00") == 1795746600
    assert _unix_time("2026-11-27T02:30:00.25Z") == 1795746600.25


def test_numbers_and_escapes() -> None:
    assert (_number(3), _number(2.0), _number(0.125), _number(True)) == ("3", "2", "0.125", "True")
    assert _escape_help('a\\b\nc "q"') == 'a\\\\b\\nc "q"'
    assert escape_label('a\\b\n"c"') == 'a\\\\b\\n\\"c\\"'


def test_prom_rounds_the_duration_and_leaves_rollout_items_out() -> None:
    rollout = Item("driver", "v", "550", "535", "rollout", "tfenv rollout status r")
    drift = Item("driver", "hold", "held", "not held")
    r = Report(
        inventory="inv.py",
        started="2026-11-27T02:30:00Z",
        finished="",
        duration_s=1.23456,
        hosts={"a": HostResult("a", True, items=[rollout, drift, rollout])},
    )
    text = render_prom(r, exit_code=3)
    assert "tfenv_reconcile_last_run_duration_seconds 1.235\n" in text
    assert "tfenv_reconcile_last_run_timestamp_seconds 1795746600\n" in text  # started
    assert "tfenv_reconcile_last_run_exit_code 3\n" in text
    assert 'tfenv_reconcile_drift_items{host="a",area="driver"} 1\n' in text
    assert text.count("tfenv_reconcile_drift_items{") == len(AREAS)
