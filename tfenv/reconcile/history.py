"""The reconcile history: an embedded SQLite database at ``STATE_DIR/reconcile.sqlite``.

Two tables:

- ``runs``: one row per recorded run (or shard of a run): its times, exit code
  and totals.
- ``drift``: one row per *episode* of one host+area+field: from the first run
  that saw it (``first_seen``) to the last (``last_seen``), and ``fixed_at`` once
  a run that checked the host no longer reported it (NULL while open). An item
  that comes back after being fixed starts a new episode. A host that a run
  could not check (or did not target) keeps its episodes as they were.

Several runs may write at once (shards on one control machine, a manual run
beside the nightly one): the database is in WAL mode with a 30 s busy timeout,
and each run's write is one ``BEGIN IMMEDIATE`` transaction, so a run's update
is atomic and runs are serialised. ``PRAGMA user_version`` holds the schema
version; a database from a newer tfenv is refused, not guessed at.

Only what :class:`~tfenv.reconcile.report.Item` carries is stored, and items
never carry a secret's value.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from tfenv.errors import TfenvError
from tfenv.reconcile.report import Item, Report, now_iso

DB_NAME = "reconcile.sqlite"
STATE_DIR_ENV = "TFENV_STATE_DIR"
DEFAULT_STATE_DIR = ".tfenv"  # beside the inventory file
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    inventory   TEXT NOT NULL,
    started     TEXT NOT NULL,
    finished    TEXT NOT NULL,
    duration_s  REAL NOT NULL,
    shard       TEXT,
    apply       INTEGER NOT NULL,
    deep        INTEGER NOT NULL,
    exit_code   INTEGER NOT NULL,
    hosts       INTEGER NOT NULL,
    checked     INTEGER NOT NULL,
    items       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS drift (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    host        TEXT NOT NULL,
    area        TEXT NOT NULL,
    field       TEXT NOT NULL,
    declared    TEXT NOT NULL,
    observed    TEXT NOT NULL,
    action      TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    fixed_at    TEXT,
    first_run   INTEGER NOT NULL REFERENCES runs(id),
    last_run    INTEGER NOT NULL REFERENCES runs(id),
    fixed_run   INTEGER REFERENCES runs(id)
);
-- At most one open episode per host+area+field.
CREATE UNIQUE INDEX IF NOT EXISTS drift_open
    ON drift(host, area, field) WHERE fixed_at IS NULL;
CREATE INDEX IF NOT EXISTS drift_host ON drift(host, last_seen);
"""

# Migrations from version N-1 to N, run in order inside one transaction.
# Index 0 creates version 1 from an empty database.
_MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1,)

_HISTORY_COLUMNS = (
    "host",
    "area",
    "field",
    "declared",
    "observed",
    "first_seen",
    "last_seen",
    "fixed_at",
    "action",
)
_RUN_COLUMNS = (
    "id",
    "inventory",
    "started",
    "finished",
    "duration_s",
    "shard",
    "apply",
    "deep",
    "exit_code",
    "hosts",
    "checked",
    "items",
)


def state_dir_for(inventory: Path, explicit: str | None, *, create: bool = True) -> Path:
    """The state directory: ``explicit`` (``--state-dir``), else ``$TFENV_STATE_DIR``,
    else ``.tfenv/`` beside the inventory file. Created (mode 0700) unless
    ``create`` is false."""
    chosen = explicit or os.environ.get(STATE_DIR_ENV) or None
    if chosen:
        path = Path(chosen).expanduser()
    else:
        path = Path(inventory).expanduser().parent / DEFAULT_STATE_DIR
    if create:
        _ensure_dir(path)
    return path


def db_path(state_dir: Path) -> Path:
    """Where the history database of ``state_dir`` lives."""
    return Path(state_dir) / DB_NAME


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise TfenvError(f"cannot create the state directory {path}: {e.strerror or e}") from e
    if not path.is_dir():
        raise TfenvError(f"the state directory {path} is not a directory")


# -- opening ------------------------------------------------------------------


def _db_error(path: Path, e: sqlite3.Error) -> TfenvError:
    """An operator's message for an SQLite error on ``path``."""
    text = str(e)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return TfenvError(
            f"the reconcile history {path} is not a readable SQLite database ({text}): "
            f"move it away (e.g. mv {path} {path}.bad) and run tfenv reconcile again "
            "to start a new history"
        )
    if "locked" in lowered or "busy" in lowered:
        return TfenvError(
            f"the reconcile history {path} stayed locked for {BUSY_TIMEOUT_S:.0f} s ({text}): "
            "another tfenv reconcile is writing it; try again when it has finished"
        )
    return TfenvError(f"cannot use the reconcile history {path}: {text}")


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; we BEGIN IMMEDIATE ourselves.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise TfenvError(
            f"the reconcile history {path} has schema version {version}, newer than this "
            f"tfenv understands ({SCHEMA_VERSION}): use the tfenv that wrote it, or move "
            "the file away to start a new history"
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` (inside the caller's transaction)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    _check_version(path, version)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[target - 1].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")


def _wal(conn: sqlite3.Connection) -> None:
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def _writer(state_dir: Path) -> Iterator[sqlite3.Connection]:
    """A connection inside one ``BEGIN IMMEDIATE`` transaction on a current schema;
    committed on success, rolled back on any error."""
    _ensure_dir(Path(state_dir))
    path = db_path(state_dir)
    conn: sqlite3.Connection | None = None
    try:
        conn = _connect(path)
        with contextlib.suppress(OSError):
            path.chmod(0o600)
        # WAL persists in the file; asking again is cheap. Switching a new file to
        # WAL can answer "locked" at once, without the busy timeout, while another
        # process does the same: retried here within that timeout.
        _wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            _migrate(conn, path)
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        raise _db_error(path, e) from e
    finally:
        if conn is not None:
            conn.close()


@contextlib.contextmanager
def _reader(state_dir: Path) -> Iterator[sqlite3.Connection | None]:
    """A connection for reading, or None when there is no history yet. Creates
    nothing."""
    path = db_path(state_dir)
    if not path.exists():
        yield None
        return
    conn: sqlite3.Connection | None = None
    try:
        conn = _connect(path)
        # One read transaction: a consistent snapshot across queries.
        conn.execute("BEGIN")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _check_version(path, version)
        if version == 0:  # an empty file, or a history that was never written
            yield None
        else:
            yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        raise _db_error(path, e) from e
    finally:
        if conn is not None:
            conn.close()


# -- writing ------------------------------------------------------------------


def record_run(state_dir: Path, report: Report) -> Report:
    """Append ``report`` as a run and update the drift episodes, atomically.

    Returns a copy of the report whose items carry ``first_seen`` from their
    open episode.
    """
    started = report.started or now_iso()
    finished = report.finished or now_iso()
    totals = report.totals
    first_seen: dict[tuple[str, str, str], str] = {}
    with _writer(state_dir) as conn:
        run_id = conn.execute(
            "INSERT INTO runs (inventory, started, finished, duration_s, shard, apply, deep,"
            " exit_code, hosts, checked, items) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                report.inventory,
                started,
                finished,
                float(report.duration_s),
                report.shard,
                int(report.apply),
                int(report.deep),
                report.exit_code,
                totals["hosts"],
                totals["checked"],
                totals["items"],
            ),
        ).lastrowid
        for name, host in sorted(report.hosts.items()):
            if not host.checked:
                continue  # not checked: its episodes stay as they are
            first_seen.update(_record_host(conn, run_id, name, host.items, started, finished))
    return replace(
        report,
        hosts={
            name: replace(
                host,
                items=[
                    replace(item, first_seen=first_seen.get((name, *item.key), item.first_seen))
                    for item in host.items
                ],
            )
            for name, host in report.hosts.items()
        },
    )


def _record_host(
    conn: sqlite3.Connection,
    run_id: int | None,
    host: str,
    items: list[Item],
    started: str,
    finished: str,
) -> dict[tuple[str, str, str], str]:
    """Update one checked host's episodes; the first_seen of each reported item."""
    reported: dict[tuple[str, str], Item] = {}
    for item in items:
        reported[item.key] = item  # a repeated key: the last one wins
    open_episodes = {
        (row["area"], row["field"]): row
        for row in conn.execute(
            "SELECT id, area, field, first_seen, last_seen FROM drift"
            " WHERE host = ? AND fixed_at IS NULL",
            (host,),
        )
    }
    result: dict[tuple[str, str, str], str] = {}
    for key, item in reported.items():
        row = open_episodes.get(key)
        if row is None:
            conn.execute(
                "INSERT INTO drift (host, area, field, declared, observed, action, first_seen,"
                " last_seen, first_run, last_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    host,
                    item.area,
                    item.field,
                    item.declared,
                    item.observed,
                    item.action,
                    started,
                    started,
                    run_id,
                    run_id,
                ),
            )
            result[(host, *key)] = started
        elif row["last_seen"] <= started:
            conn.execute(
                "UPDATE drift SET declared = ?, observed = ?, action = ?, last_seen = ?,"
                " last_run = ? WHERE id = ?",
                (item.declared, item.observed, item.action, started, run_id, row["id"]),
            )
            result[(host, *key)] = row["first_seen"]
        else:
            # A run that started later already recorded newer values: keep them.
            result[(host, *key)] = row["first_seen"]
    for key, row in open_episodes.items():
        # Gone now. Close it unless a run that started after this one saw it
        # (an overlapping run committed first with newer observations).
        if key not in reported and row["last_seen"] <= started:
            conn.execute(
                "UPDATE drift SET fixed_at = ?, fixed_run = ? WHERE id = ?",
                (finished, run_id, row["id"]),
            )
    return result


# -- reading ------------------------------------------------------------------


def host_history(state_dir: Path, host: str | None = None) -> list[dict[str, Any]]:
    """Drift episodes, newest first (of one host, or all): one dict per episode with
    host, area, field, declared, observed, first_seen, last_seen, fixed_at (None
    while open) and action."""
    with _reader(state_dir) as conn:
        if conn is None:
            return []
        where, params = ("WHERE host = ?", (host,)) if host is not None else ("", ())
        rows = conn.execute(
            f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM drift {where}"
            " ORDER BY last_seen DESC, first_seen DESC, host, area, field, id DESC",
            params,
        ).fetchall()
        return [dict(row) for row in rows]


def last_runs(state_dir: Path, n: int = 10) -> list[dict[str, Any]]:
    """The last ``n`` recorded runs, newest first."""
    with _reader(state_dir) as conn:
        if conn is None:
            return []
        rows = conn.execute(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs ORDER BY id DESC LIMIT ?", (n,)
        ).fetchall()
        out = [dict(row) for row in rows]
    for run in out:
        run["apply"] = bool(run["apply"])
        run["deep"] = bool(run["deep"])
    return out


_FORMAT_HEADERS = {
    "host": "HOST",
    "area": "AREA",
    "field": "FIELD",
    "declared": "DECLARED",
    "observed": "OBSERVED",
    "first_seen": "FIRST SEEN",
    "last_seen": "LAST SEEN",
    "fixed_at": "FIXED",
    "action": "ACTION",
}
_MAX_VALUE_WIDTH = 40  # declared/observed are cut to this many characters

NO_HISTORY = (
    "no reconcile history yet: run `tfenv reconcile INVENTORY` to check the fleet "
    "and record the first run"
)


def _cell(column: str, value: Any) -> str:
    if column == "fixed_at" and value is None:
        return "open"
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # one line: newlines and tabs become spaces
    if column in ("declared", "observed") and len(text) > _MAX_VALUE_WIDTH:
        text = text[: _MAX_VALUE_WIDTH - 3] + "..."
    return text


def format_history(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of :func:`host_history` rows ("open" where not fixed),
    or a one-line hint when there is no history yet."""
    if not rows:
        return NO_HISTORY
    columns = list(_FORMAT_HEADERS)
    table = [[_FORMAT_HEADERS[c] for c in columns]]
    table += [[_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )
