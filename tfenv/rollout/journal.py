"""A rollout's state: an SQLite journal and an append-only audit log, in the state
directory reconcile uses (``.tfenv/`` beside the inventory, or ``--state-dir``).

- ``rollouts``: one row per rollout (what, to which digest, the plan, options,
  status, the wave it is at);
- ``steps``: one row per host step, written before (``started``) and after
  (``passed``, ``failed``, ``inconclusive``, ``busy``, ``done``) each step, never
  updated: the last row of a host and step is its state;
- ``rollout-audit.jsonl``: every event (who, when, from and to digests, wave,
  gate numbers, decisions), one JSON object per line, appended and fsynced.

Nothing here is the only copy of what the hosts can tell: each moved container
carries the rollout's id and its previous digest as labels.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from tfenv.errors import TfenvError
from tfenv.reconcile.report import now_iso

DB_NAME = "rollouts.sqlite"
AUDIT_NAME = "rollout-audit.jsonl"
# A rollout that holds its container group (a rollback killed half-way included).
ACTIVE = ("running", "paused", "waiting", "rolling-back")
FINAL = ("completed", "aborted")

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    container TEXT NOT NULL,
    inventory TEXT NOT NULL,
    to_ref TEXT NOT NULL,
    to_image TEXT NOT NULL,
    plan TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    wave INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout TEXT NOT NULL REFERENCES rollouts(id),
    host TEXT NOT NULL,
    wave INTEGER NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_of ON steps (rollout, host, step);
"""


class JournalError(TfenvError):
    pass


def owner() -> str:
    """Who runs this: user@machine (pid), for the lock, the journal and the audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


@dataclass
class Rollout:
    id: str
    container: str
    inventory: str
    to_ref: str
    to_image: str  # name@sha256:...
    waves: list[list[str]]
    hosts: dict[str, dict]  # host -> {"from": name@sha256, "declared_ref": ..., "lock": ...}
    options: dict
    status: str = "running"
    wave: int = 0  # index of the wave being worked on (or next)
    reason: str = ""
    owner: str = field(default_factory=owner)
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)

    @property
    def plan(self) -> dict:
        return {"waves": self.waves, "hosts": self.hosts}


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.audit_path = self.state_dir / AUDIT_NAME
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.state_dir / DB_NAME, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            why = f"the rollout journal in {self.state_dir} cannot be used: {exc}"
            raise JournalError(why) from None

    def close(self) -> None:
        self.db.close()

    # -- rollouts --------------------------------------------------------------

    def create(self, rollout: Rollout) -> None:
        self.db.execute(
            "INSERT INTO rollouts (id, container, inventory, to_ref, to_image, plan, options,"
            " status, wave, reason, owner, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rollout.id, rollout.container, rollout.inventory, rollout.to_ref, rollout.to_image,
             json.dumps(rollout.plan), json.dumps(rollout.options), rollout.status, rollout.wave,
             rollout.reason, rollout.owner, rollout.created, rollout.updated),
        )  # fmt: skip

    def save(self, rollout: Rollout) -> None:
        rollout.updated = now_iso()
        self.db.execute(
            "UPDATE rollouts SET status = ?, wave = ?, reason = ?, plan = ?, owner = ?,"
            " updated = ? WHERE id = ?",
            (rollout.status, rollout.wave, rollout.reason, json.dumps(rollout.plan),
             rollout.owner, rollout.updated, rollout.id),
        )  # fmt: skip

    def get(self, rollout_id: str) -> Rollout | None:
        row = self.db.execute(
            "SELECT id, container, inventory, to_ref, to_image, plan, options, status, wave,"
            " reason, owner, created, updated FROM rollouts WHERE id = ?",
            (rollout_id,),
        ).fetchone()
        return _rollout(row) if row else None

    def active(self, container: str, inventory: str) -> Rollout | None:
        """The rollout of ``container`` (over ``inventory``) that is not finished, if any."""
        row = self.db.execute(
            "SELECT id, container, inventory, to_ref, to_image, plan, options, status, wave,"
            " reason, owner, created, updated FROM rollouts WHERE container = ? AND"
            " inventory = ? AND status IN (?, ?, ?, ?) ORDER BY created DESC LIMIT 1",
            (container, inventory, *ACTIVE),
        ).fetchone()
        return _rollout(row) if row else None

    def all(self) -> list[Rollout]:
        rows = self.db.execute(
            "SELECT id, container, inventory, to_ref, to_image, plan, options, status, wave,"
            " reason, owner, created, updated FROM rollouts ORDER BY created"
        ).fetchall()
        return [_rollout(row) for row in rows]

    # -- host steps ------------------------------------------------------------

    def step(self, rollout: Rollout, host: str, wave: int, step: str, state: str,
             detail: dict | None = None) -> None:  # fmt: skip
        self.db.execute(
            "INSERT INTO steps (rollout, host, wave, step, state, detail, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rollout.id, host, wave, step, state, json.dumps(detail or {}), now_iso()),
        )

    def last(self, rollout_id: str, host: str, step: str) -> tuple[str, dict] | None:
        """The last state (and its detail) of ``host``'s ``step`` in the rollout."""
        row = self.db.execute(
            "SELECT state, detail FROM steps WHERE rollout = ? AND host = ? AND step = ?"
            " ORDER BY seq DESC LIMIT 1",
            (rollout_id, host, step),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def steps(self, rollout_id: str) -> list[dict]:
        rows = self.db.execute(
            "SELECT host, wave, step, state, detail, at FROM steps WHERE rollout = ? ORDER BY seq",
            (rollout_id,),
        ).fetchall()
        return [
            {"host": h, "wave": w, "step": s, "state": st, "detail": json.loads(d), "at": at}
            for h, w, s, st, d, at in rows
        ]

    # -- audit -----------------------------------------------------------------

    def audit(self, rollout: Rollout, event: str, **details: object) -> None:
        """Append one event to the audit log (fsynced: it survives a kill -9 after it)."""
        line = {
            "at": now_iso(),
            "who": owner(),
            "rollout": rollout.id,
            "container": rollout.container,
            "event": event,
            "from": sorted(
                {
                    h.get("from") or h["declared"]
                    for h in rollout.hosts.values()
                    if h.get("from") or h.get("declared")
                }
            ),
            "to": rollout.to_image,
            **details,
        }
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def audit_lines(self, rollout_id: str | None = None) -> list[dict]:
        if not self.audit_path.exists():
            return []
        lines = []
        for text in self.audit_path.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            if rollout_id is None or line.get("rollout") == rollout_id:
                lines.append(line)
        return lines


def _rollout(row: tuple) -> Rollout:
    (rid, container, inventory, to_ref, to_image, plan, options, status, wave, reason, who,
     created, updated) = row  # fmt: skip
    plan_data = json.loads(plan)
    return Rollout(
        id=rid, container=container, inventory=inventory, to_ref=to_ref, to_image=to_image,
        waves=plan_data["waves"], hosts=plan_data["hosts"], options=json.loads(options),
        status=status, wave=wave, reason=reason, owner=who, created=created, updated=updated,
    )  # fmt: skip
