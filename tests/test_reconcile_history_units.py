"""tfenv.reconcile.history, unit by unit: its error messages, the WAL retry,
the connection's settings, episodes of overlapping runs, the run rows and the
exact history table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tfenv.errors import TfenvError
from tfenv.reconcile import history
from tfenv.reconcile.history import (
    NO_HISTORY,
    _cell,
    _check_version,
    _connect,
    _db_error,
    _wal,
    db_path,
    format_history,
    host_history,
    last_runs,
    record_run,
    state_dir_for,
)
from tfenv.reconcile.report import HostResult, Item, Report

DRIVER = Item("driver", "nvidia-driver.version", "550.127.05", "550.90.07")
DOCKER = Item("docker", "docker.version", "27.3.1", "27.2.0")
P = Path("/s/reconcile.sqlite")


def t(minute: int) -> str:
    return f"2025-01-01T00:{minute:02d}:00Z"


def run(minute: int, **hosts: list[Item] | None) -> Report:
    return Report(
        inventory="fleet.yaml",
        started=t(minute),
        finished=t(minute + 1),
        duration_s=60.0,
        hosts={
            name: HostResult(name, items is not None, items=list(items or []))
            for name, items in hosts.items()
        },
    )


# -- messages -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["file is not a database", "database disk image is malformed", "Corrupt page", "MALFORMED x"],
)
def test_a_broken_file_says_move_it_away(text: str) -> None:
    error = _db_error(P, sqlite3.DatabaseError(text))
    assert str(error) == (
        f"the reconcile history {P} is not a readable SQLite database ({text}): "
        f"move it away (e.g. mv {P} {P}.bad) and run tfenv reconcile again "
        "to start a new history"
    )


@pytest.mark.parametrize("text", ["database is locked", "Database BUSY", "table locked"])
def test_a_locked_file_says_try_again(text: str) -> None:
    error = _db_error(P, sqlite3.OperationalError(text))
    assert str(error) == (
        f"the reconcile history {P} stayed locked for 30 s ({text}): "
        "another tfenv reconcile is writing it; try again when it has finished"
    )


@pytest.mark.parametrize("text", ["disk I/O error", "unable to open database file", ""])
def test_any_other_error_is_named(text: str) -> None:
    error = _db_error(P, sqlite3.OperationalError(text))
    assert isinstance(error, TfenvError)
    assert str(error) == f"cannot use the reconcile history {P}: {text}"


def test_a_newer_schema_is_refused_with_the_versions() -> None:
    _check_version(P, history.SCHEMA_VERSION)  # current: fine
    _check_version(P, 0)
    with pytest.raises(TfenvError) as caught:
        _check_version(P, 2)
    assert str(caught.value) == (
        f"the reconcile history {P} has schema version 2, newer than this "
        "tfenv understands (1): use the tfenv that wrote it, or move "
        "the file away to start a new history"
    )


# -- state directory ----------------------------------------------------------


def test_a_nested_state_dir_is_created_with_its_parents(tmp_path: Path) -> None:
    got = state_dir_for(tmp_path / "fleet.yaml", str(tmp_path / "a" / "b" / "c"))
    assert got == tmp_path / "a" / "b" / "c" and got.is_dir()
    record_run(tmp_path / "x" / "y", run(0, gpu1=[DRIVER]))
    assert db_path(tmp_path / "x" / "y") == tmp_path / "x" / "y" / "reconcile.sqlite"
    assert db_path(tmp_path / "x" / "y").is_file()


def test_a_state_dir_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TfenvError) as caught:
        state_dir_for(tmp_path / "fleet.yaml", str(tmp_path / "file" / "sub"))
    assert str(caught.value) == (
        f"cannot create the state directory {tmp_path / 'file' / 'sub'}: Not a directory"
    )
    with pytest.raises(TfenvError) as caught:
        state_dir_for(tmp_path / "fleet.yaml", str(tmp_path / "file"))
    assert (
        str(caught.value) == f"cannot create the state directory {tmp_path / 'file'}: File exists"
    )


def test_a_state_dir_gone_after_mkdir_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Path, "mkdir", lambda self, **kw: None)  # e.g. removed at once
    with pytest.raises(TfenvError) as caught:
        state_dir_for(tmp_path / "fleet.yaml", str(tmp_path / "gone"))
    assert str(caught.value) == f"the state directory {tmp_path / 'gone'} is not a directory"


def test_explicit_state_dir_expands_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TFENV_STATE_DIR", raising=False)
    assert state_dir_for(Path("fleet.yaml"), "~/st", create=False) == tmp_path / "st"
    assert (
        state_dir_for(Path("~/inv/fleet.yaml"), None, create=False) == tmp_path / "inv" / ".tfenv"
    )
    monkeypatch.setenv("TFENV_STATE_DIR", "")  # empty: as if unset
    assert state_dir_for(Path("/i/fleet.yaml"), "", create=False) == Path("/i/.tfenv")


# -- the connection -----------------------------------------------------------


def test_a_connection_waits_30_s_and_leaves_transactions_to_us(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "db.sqlite")
    try:
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert conn.isolation_level is None
        assert conn.row_factory is sqlite3.Row
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert not conn.in_transaction  # autocommit: no implicit BEGIN
    finally:
        conn.close()


class FlakyWal:
    """A connection whose ``PRAGMA journal_mode`` raises ``errors`` in turn first."""

    def __init__(self, *errors: str) -> None:
        self.errors = list(errors)
        self.statements: list[str] = []

    def execute(self, statement: str) -> None:
        self.statements.append(statement)
        if self.errors:
            raise sqlite3.OperationalError(self.errors.pop(0))


class Clock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def test_wal_retries_while_locked(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(history.time, "sleep", slept.append)
    # deadline 100 + 30 = 130; retried at 110 and at exactly 130
    monkeypatch.setattr(history.time, "monotonic", Clock(100.0, 110.0, 130.0))
    conn = FlakyWal("database is locked", "Database Locked")
    _wal(conn)  # type: ignore[arg-type]
    assert conn.statements == ["PRAGMA journal_mode = WAL"] * 3
    assert slept == [0.05, 0.05]


def test_wal_gives_up_after_the_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(history.time, "sleep", slept.append)
    monkeypatch.setattr(history.time, "monotonic", Clock(100.0, 130.5))
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        _wal(FlakyWal("database is locked", "database is locked"))  # type: ignore[arg-type]
    assert slept == []


def test_wal_does_not_retry_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(history.time, "sleep", slept.append)
    monkeypatch.setattr(history.time, "monotonic", Clock(100.0, 100.0))
    conn = FlakyWal("disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        _wal(conn)  # type: ignore[arg-type]
    assert conn.statements == ["PRAGMA journal_mode = WAL"] and slept == []


# -- episodes -----------------------------------------------------------------


def test_an_older_run_that_still_sees_an_item_keeps_the_newer_values(tmp_path: Path) -> None:
    newer = Item(DRIVER.area, DRIVER.field, DRIVER.declared, "newest")
    record_run(tmp_path, run(5, gpu1=[newer]))
    got = record_run(tmp_path, run(0, gpu1=[DRIVER]))
    [episode] = host_history(tmp_path, "gpu1")
    assert (episode["observed"], episode["last_seen"], episode["first_seen"]) == (
        "newest",
        t(5),
        t(5),
    )
    assert got.hosts["gpu1"].items[0].first_seen == t(5)


def test_a_run_that_started_at_the_same_second_updates_and_closes(tmp_path: Path) -> None:
    record_run(tmp_path, run(5, gpu1=[DRIVER, DOCKER]))
    again = Item(DRIVER.area, DRIVER.field, DRIVER.declared, "other", action="person")
    got = record_run(tmp_path, run(5, gpu1=[again]))
    rows = {r["area"]: r for r in host_history(tmp_path, "gpu1")}
    assert (rows["driver"]["observed"], rows["driver"]["action"]) == ("other", "person")
    assert rows["driver"]["fixed_at"] is None
    assert rows["docker"]["fixed_at"] == t(6)  # closed: its last sighting was not later
    assert got.hosts["gpu1"].items[0].first_seen == t(5)


def test_an_unchecked_host_first_does_not_stop_the_others(tmp_path: Path) -> None:
    seen = Item("nfs", "m", "a", "b", first_seen="2020-01-01T00:00:00Z")
    report = run(0, aaa=None, bbb=[DRIVER])
    report.hosts["aaa"].items.append(seen)
    got = record_run(tmp_path, report)
    assert [r["host"] for r in host_history(tmp_path)] == ["bbb"]
    assert got.hosts["bbb"].items[0].first_seen == t(0)
    # An unchecked host's items keep the first_seen they came with.
    assert got.hosts["aaa"].items[0].first_seen == "2020-01-01T00:00:00Z"


def test_an_episode_row_holds_what_was_seen(tmp_path: Path) -> None:
    record_run(tmp_path, run(0, gpu1=[DRIVER]))
    record_run(tmp_path, run(3, gpu1=[]))
    with sqlite3.connect(db_path(tmp_path)) as conn:
        row = conn.execute(
            "SELECT host, area, field, declared, observed, action, first_seen, last_seen,"
            " fixed_at, first_run, last_run, fixed_run FROM drift"
        ).fetchone()
    assert row == (
        "gpu1",
        "driver",
        "nvidia-driver.version",
        "550.127.05",
        "550.90.07",
        "apply",
        t(0),
        t(0),
        t(4),
        1,
        1,
        2,
    )


# -- reading ------------------------------------------------------------------


def test_last_runs_are_ten_by_default_with_booleans(tmp_path: Path) -> None:
    for minute in range(11):
        report = run(minute, gpu1=[])
        report.deep = minute % 2 == 1
        report.apply = minute == 10
        record_run(tmp_path, report)
    runs = last_runs(tmp_path)
    assert [r["id"] for r in runs] == list(range(11, 1, -1))
    assert runs[0]["deep"] is False and runs[1]["deep"] is True
    assert runs[0]["apply"] is True and runs[1]["apply"] is False
    assert runs[0] == {
        "id": 11,
        "inventory": "fleet.yaml",
        "started": t(10),
        "finished": t(11),
        "duration_s": 60.0,
        "shard": None,
        "apply": True,
        "deep": False,
        "exit_code": 0,
        "hosts": 1,
        "checked": 1,
        "items": 0,
    }


def test_history_order_ties_broken_by_first_seen_then_names(tmp_path: Path) -> None:
    record_run(tmp_path, run(0, gpu2=[DRIVER]))
    record_run(tmp_path, run(5, gpu2=[DRIVER, DOCKER], gpu1=[DRIVER, DOCKER]))
    got = [(r["host"], r["area"], r["first_seen"]) for r in host_history(tmp_path)]
    assert got == [
        ("gpu1", "docker", t(5)),
        ("gpu1", "driver", t(5)),
        ("gpu2", "docker", t(5)),
        ("gpu2", "driver", t(0)),
    ]
    assert [r["host"] for r in host_history(tmp_path, "gpu1")] == ["gpu1", "gpu1"]


# -- the table ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "cell"),
    [
        ("fixed_at", None, "open"),
        ("fixed_at", "T", "T"),
        ("first_seen", None, ""),
        ("declared", None, ""),
        ("observed", "a\n b\tc", "a b c"),
        ("declared", "x" * 40, "x" * 40),
        ("declared", "x" * 41, "x" * 37 + "..."),
        ("observed", "y" * 50, "y" * 37 + "..."),
        ("field", "f" * 50, "f" * 50),
        ("area", 3, "3"),
    ],
)
def test_cells(column: str, value: object, cell: str) -> None:
    assert _cell(column, value) == cell


def test_the_table_exactly() -> None:
    rows = [
        {
            "host": "gpu1",
            "area": "driver",
            "field": "v",
            "declared": "550",
            "observed": "535",
            "first_seen": "T0",
            "last_seen": "T1",
            "fixed_at": None,
            "action": "apply",
        },
        {
            "host": "g2",
            "area": "nfs",
            "field": "mount",
            "declared": "yes",
            "observed": "",
            "first_seen": "T0",
            "last_seen": "T0",
            "fixed_at": "T2",
            "action": "",
        },
    ]
    assert format_history(rows) == (
        "HOST  AREA    FIELD  DECLARED  OBSERVED  FIRST SEEN  LAST SEEN  FIXED  ACTION\n"
        "gpu1  driver  v      550       535       T0          T1         open   apply\n"
        "g2    nfs     mount  yes                 T0          T0         T2"
    )
    assert (
        format_history([])
        == NO_HISTORY
        == (
            "no reconcile history yet: run `tfenv reconcile INVENTORY` to check the fleet "
            "and record the first run"
        )
    )
