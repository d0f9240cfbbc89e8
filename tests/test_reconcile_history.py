"""The reconcile history (tfenv.reconcile.history): episodes, reading, errors, concurrency."""

from __future__ import annotations

import itertools
import random
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfenv.errors import TfenvError
from tfenv.reconcile import history
from tfenv.reconcile.history import (
    NO_HISTORY,
    db_path,
    format_history,
    host_history,
    last_runs,
    record_run,
    state_dir_for,
)
from tfenv.reconcile.report import HostResult, Item, Report, now_iso

DRIVER = Item("driver", "nvidia-driver.version", "550.127.05", "550.90.07")
ENV = Item("containers", "dev-a.env", "A=1", "A=2", action="person", command="tfenv fix dev-a")
DOCKER = Item("docker", "docker.version", "27.3.1", "27.2.0")


def t(minute: int) -> str:
    return f"2025-01-01T00:{minute:02d}:00Z"


def report(
    minute: int, hosts: dict[str, list[Item] | None], inventory: str = "fleet.yaml"
) -> Report:
    """A report started at minute ``minute``, finished a minute later. A host whose
    items are None was not checked."""
    return Report(
        inventory=inventory,
        started=t(minute),
        finished=t(minute + 1),
        duration_s=60.0,
        hosts={
            name: HostResult(
                name=name,
                checked=items is not None,
                error=None if items is not None else "ssh: timeout",
                items=list(items or []),
            )
            for name, items in hosts.items()
        },
    )


def episodes(state_dir: Path, host: str, area: str, field: str) -> list[dict]:
    """The episodes of one host+area+field, oldest first."""
    return sorted(
        (r for r in host_history(state_dir, host) if (r["area"], r["field"]) == (area, field)),
        key=lambda r: r["first_seen"],
    )


# -- state directory --------------------------------------------------------------


def test_state_dir_default_beside_inventory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TFENV_STATE_DIR", raising=False)
    inventory = tmp_path / "inv" / "fleet.yaml"
    inventory.parent.mkdir()
    got = state_dir_for(inventory, None)
    assert got == tmp_path / "inv" / ".tfenv"
    assert got.is_dir()
    assert stat.S_IMODE(got.stat().st_mode) == 0o700


def test_state_dir_explicit_beats_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TFENV_STATE_DIR", str(tmp_path / "from-env"))
    inventory = tmp_path / "fleet.yaml"
    assert state_dir_for(inventory, str(tmp_path / "flag")) == tmp_path / "flag"
    assert state_dir_for(inventory, None) == tmp_path / "from-env"
    assert (tmp_path / "from-env").is_dir()


def test_state_dir_not_created_when_asked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TFENV_STATE_DIR", raising=False)
    got = state_dir_for(tmp_path / "fleet.yaml", None, create=False)
    assert not got.exists()
    assert host_history(got) == []
    assert last_runs(got) == []
    assert not got.exists()  # reading creates nothing


# -- episodes ---------------------------------------------------------------------


def test_first_seen_kept_and_last_seen_moves(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER]}))
    changed = Item(DRIVER.area, DRIVER.field, DRIVER.declared, "550.54.15")
    record_run(tmp_path, report(10, {"gpu1": [changed]}))
    [episode] = episodes(tmp_path, "gpu1", "driver", "nvidia-driver.version")
    assert episode["first_seen"] == t(0)
    assert episode["last_seen"] == t(10)
    assert episode["observed"] == "550.54.15"  # the latest observation
    assert episode["fixed_at"] is None


def test_first_seen_filled_into_returned_report(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER]}))
    given = report(10, {"gpu1": [DRIVER, ENV], "gpu2": None})
    got = record_run(tmp_path, given)
    items = {item.key: item for item in got.hosts["gpu1"].items}
    assert items[DRIVER.key].first_seen == t(0)
    assert items[ENV.key].first_seen == t(10)
    # The rest of the report is as given, and the given report is untouched.
    assert items[ENV.key].command == "tfenv fix dev-a"
    assert got.hosts["gpu2"].checked is False
    assert got.started == given.started and got.exit_code == given.exit_code
    assert all(item.first_seen is None for item in given.hosts["gpu1"].items)


def test_fixed_when_item_gone_on_checked_host(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER, ENV]}))
    record_run(tmp_path, report(10, {"gpu1": [ENV]}))
    [driver] = episodes(tmp_path, "gpu1", "driver", "nvidia-driver.version")
    assert driver["fixed_at"] == t(11)  # the fixing run's finish
    assert driver["last_seen"] == t(0)
    [env] = episodes(tmp_path, "gpu1", "containers", "dev-a.env")
    assert env["fixed_at"] is None


def test_clean_checked_host_closes_everything(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER, ENV]}))
    record_run(tmp_path, report(10, {"gpu1": []}))
    assert all(r["fixed_at"] == t(11) for r in host_history(tmp_path, "gpu1"))


def test_unchecked_host_keeps_its_episodes(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER], "gpu2": [DOCKER]}))
    before = host_history(tmp_path, "gpu1")
    record_run(tmp_path, report(10, {"gpu1": None, "gpu2": [DOCKER]}))
    assert host_history(tmp_path, "gpu1") == before
    assert before[0]["fixed_at"] is None


def test_host_absent_from_report_keeps_its_episodes(tmp_path: Path) -> None:
    # Another shard's host: not in this report at all.
    record_run(tmp_path, report(0, {"gpu1": [DRIVER], "gpu2": [DOCKER]}))
    record_run(tmp_path, report(10, {"gpu2": []}))
    [driver] = host_history(tmp_path, "gpu1")
    assert driver["fixed_at"] is None and driver["last_seen"] == t(0)


def test_reappearing_item_starts_new_episode(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER]}))
    record_run(tmp_path, report(10, {"gpu1": []}))
    got = record_run(tmp_path, report(20, {"gpu1": [DRIVER]}))
    old, new = episodes(tmp_path, "gpu1", "driver", "nvidia-driver.version")
    assert (old["first_seen"], old["fixed_at"]) == (t(0), t(11))
    assert (new["first_seen"], new["last_seen"], new["fixed_at"]) == (t(20), t(20), None)
    assert got.hosts["gpu1"].items[0].first_seen == t(20)


def test_older_overlapping_run_does_not_undo_newer_one(tmp_path: Path) -> None:
    # Run B (started minute 5) commits first and sees the drift; run A (started
    # minute 0, commits later) did not see it: A's older view must not close it.
    record_run(tmp_path, report(5, {"gpu1": [DRIVER]}))
    record_run(tmp_path, report(0, {"gpu1": []}))
    [driver] = host_history(tmp_path, "gpu1")
    assert driver["fixed_at"] is None and driver["last_seen"] == t(5)


def test_runs_recorded(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER, ENV], "gpu2": None}))
    shard = report(10, {"gpu1": []})
    shard.shard, shard.apply = "1/2", True
    record_run(tmp_path, shard)
    newest, oldest = last_runs(tmp_path)
    assert newest["shard"] == "1/2" and newest["apply"] is True
    assert newest["exit_code"] == 0 and newest["items"] == 0
    assert oldest["id"] < newest["id"]
    assert oldest["inventory"] == "fleet.yaml"
    assert (oldest["hosts"], oldest["checked"], oldest["items"]) == (2, 1, 2)
    assert oldest["exit_code"] == 1  # a host was not checked
    assert (oldest["started"], oldest["finished"], oldest["duration_s"]) == (t(0), t(1), 60.0)
    assert [r["id"] for r in last_runs(tmp_path, n=1)] == [newest["id"]]


def test_history_host_filter_and_order(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER], "gpu2": [DOCKER]}))
    record_run(tmp_path, report(10, {"gpu1": [DRIVER, ENV], "gpu2": None}))
    assert {r["host"] for r in host_history(tmp_path, "gpu2")} == {"gpu2"}
    assert host_history(tmp_path, "nope") == []
    everything = host_history(tmp_path)
    assert len(everything) == 3
    assert [r["last_seen"] for r in everything] == [t(10), t(10), t(0)]  # newest first
    assert set(everything[0]) == {
        "host",
        "area",
        "field",
        "declared",
        "observed",
        "first_seen",
        "last_seen",
        "fixed_at",
        "action",
    }


def test_format_history(tmp_path: Path) -> None:
    long_env = Item("containers", "dev-a.env", "X=" + "y" * 100, "X=\nz", action="person")
    record_run(tmp_path, report(0, {"gpu1": [DRIVER, long_env]}))
    record_run(tmp_path, report(10, {"gpu1": [long_env]}))
    text = format_history(host_history(tmp_path))
    lines = text.splitlines()
    assert lines[0].split() == [
        "HOST",
        "AREA",
        "FIELD",
        "DECLARED",
        "OBSERVED",
        "FIRST",
        "SEEN",
        "LAST",
        "SEEN",
        "FIXED",
        "ACTION",
    ]
    assert len(lines) == 3  # one line per row, even with a newline in a value
    env_line = next(line for line in lines if "dev-a.env" in line)
    assert "open" in env_line and "person" in env_line and "..." in env_line
    driver_line = next(line for line in lines if "nvidia-driver.version" in line)
    assert t(11) in driver_line and "open" not in driver_line
    # Fixed width: every column starts at the same offset on every line.
    start = lines[0].index("FIRST SEEN")
    assert all(line[start : start + len(t(0))].startswith("2025-") for line in lines[1:])


def test_format_history_empty() -> None:
    assert format_history([]) == NO_HISTORY
    assert "\n" not in NO_HISTORY and "tfenv reconcile INVENTORY" in NO_HISTORY


def test_no_secret_value_beyond_items(tmp_path: Path) -> None:
    # Whatever the items carry is all there is: nothing else of the report is stored.
    record_run(tmp_path, report(0, {"gpu1": [DRIVER]}))
    with sqlite3.connect(db_path(tmp_path)) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(drift)")}
    assert "command" not in columns and "error" not in columns


# -- schema and errors ------------------------------------------------------------


def test_wal_and_schema_version(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER]}))
    with sqlite3.connect(db_path(tmp_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION


def test_newer_schema_refused(tmp_path: Path) -> None:
    record_run(tmp_path, report(0, {"gpu1": [DRIVER]}))
    conn = sqlite3.connect(db_path(tmp_path))
    conn.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    conn.close()
    for call in (
        lambda: record_run(tmp_path, report(10, {"gpu1": []})),
        lambda: host_history(tmp_path),
        lambda: last_runs(tmp_path),
    ):
        with pytest.raises(TfenvError, match="newer than this tfenv") as info:
            call()
        assert str(db_path(tmp_path)) in str(info.value)
    # Refused, not changed: the run was not recorded.
    conn = sqlite3.connect(db_path(tmp_path))
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    conn.close()


@pytest.mark.parametrize(
    "content", [b"this is not sqlite\n" * 200, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_corrupt_file_clear_error(tmp_path: Path, content: bytes) -> None:
    path = db_path(tmp_path)
    path.write_bytes(content)
    for call in (
        lambda: record_run(tmp_path, report(0, {"gpu1": [DRIVER]})),
        lambda: host_history(tmp_path),
        lambda: last_runs(tmp_path),
    ):
        with pytest.raises(TfenvError, match="move it away") as info:
            call()
        assert str(path) in str(info.value)
    assert path.read_bytes() == content  # left as it was


def test_empty_file_is_no_history(tmp_path: Path) -> None:
    db_path(tmp_path).touch()
    assert host_history(tmp_path) == []
    record_run(tmp_path, report(0, {"gpu1": [DRIVER]}))
    assert len(host_history(tmp_path)) == 1


# -- concurrency ------------------------------------------------------------------

WORKERS, RUNS_EACH = 4, 25
HOSTS = ("gpu1", "gpu2", "gpu3")
POOL = (DRIVER, ENV, DOCKER, Item("nfs", "ckpt.mounted", "yes", "no"))


def _worker(state_dir: str, seed: int) -> None:
    """Record RUNS_EACH random runs (its own Python process), once the start file exists."""
    rng = random.Random(seed)
    go = Path(state_dir) / "go"
    while not go.exists():
        time.sleep(0.01)
    for _ in range(RUNS_EACH):
        hosts: dict[str, HostResult] = {}
        for name in HOSTS:
            if rng.random() < 0.2:
                hosts[name] = HostResult(name=name, checked=False, error="unreachable")
            else:
                items = [item for item in POOL if rng.random() < 0.5]
                hosts[name] = HostResult(name=name, checked=True, items=items)
        started = now_iso()
        got = record_run(
            Path(state_dir),
            Report(
                inventory="fleet.yaml",
                started=started,
                finished=now_iso(),
                shard=f"{seed}/{WORKERS}",
                hosts=hosts,
            ),
        )
        for host in got.hosts.values():
            assert all(item.first_seen is not None for item in host.items)


def test_concurrent_writers(tmp_path: Path) -> None:
    # Plain processes, not multiprocessing: the test run's gevent patching (pyinfra)
    # must not reach the writers.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from test_reconcile_history import _worker; _worker(sys.argv[2], int(sys.argv[3]))"
    )
    here = str(Path(__file__).parent)
    processes = [
        subprocess.Popen([sys.executable, "-c", code, here, str(tmp_path), str(seed)])
        for seed in range(1, WORKERS + 1)
    ]
    time.sleep(1.0)  # let them all import, then start them together
    (tmp_path / "go").touch()
    assert [p.wait(timeout=600) for p in processes] == [0] * WORKERS

    conn = sqlite3.connect(db_path(tmp_path))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == WORKERS * RUNS_EACH
        shards = conn.execute("SELECT shard, count(*) FROM runs GROUP BY shard").fetchall()
        assert sorted(shards) == [(f"{s}/{WORKERS}", RUNS_EACH) for s in range(1, WORKERS + 1)]
        # At most one open episode per host+area+field.
        assert (
            conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM drift WHERE fixed_at IS NULL"
                " GROUP BY host, area, field HAVING count(*) > 1)"
            ).fetchone()[0]
            == 0
        )
        # Every episode is ordered in time and runs; closed ones after their last sighting.
        rows = conn.execute(
            "SELECT first_seen, last_seen, fixed_at, first_run, last_run, fixed_run FROM drift"
        ).fetchall()
        assert rows
        for first_seen, last_seen, fixed_at, first_run, last_run, fixed_run in rows:
            assert first_seen <= last_seen
            assert first_run <= last_run
            assert (fixed_at is None) == (fixed_run is None)
            if fixed_at is not None:
                assert last_seen <= fixed_at
        # Episodes of one key do not overlap: each closed before the next began.
        by_key: dict[tuple[str, str, str], list[tuple[int, int | None]]] = {}
        for host, area, field, first_run, fixed_run in conn.execute(
            "SELECT host, area, field, first_run, fixed_run FROM drift ORDER BY id"
        ):
            by_key.setdefault((host, area, field), []).append((first_run, fixed_run))
        for spans in by_key.values():
            for (_, fixed_run), (next_first, _) in itertools.pairwise(spans):
                assert fixed_run is not None and fixed_run <= next_first
    finally:
        conn.close()
