"""ContainerStore: container rows in sqlite.

Schema (one table; status is never stored, it is derived from conmon and its
exit file, so nothing here can go stale):

    containers
      id          TEXT PRIMARY KEY   -- 64 lowercase hex, chosen by the caller
      name        TEXT UNIQUE        -- without the leading '/'
      labels      TEXT               -- JSON object
      spec        TEXT               -- JSON of model.Spec
      metadata    BLOB               -- opaque, kept for the caller
      created_at  REAL               -- unix seconds
      started_at  REAL               -- set once `runc start` returned
      exit_code   INTEGER            -- NULL until the exit was recorded
                                     -- (started_at and the exit are the latest run's:
                                     -- starting a stopped container clears them)
      finished_at REAL
      oom_killed  INTEGER
      note        TEXT               -- why an exit was inferred rather than read
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Protocol

from services.common.sqlite import Transaction, open_db
from services.container.model import Exit, Mount, Process, Record, Resources, Spec

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    labels      TEXT NOT NULL,
    spec        TEXT NOT NULL,
    metadata    BLOB NOT NULL,
    created_at  REAL NOT NULL,
    started_at  REAL NOT NULL DEFAULT 0,
    exit_code   INTEGER,
    finished_at REAL,
    oom_killed  INTEGER NOT NULL DEFAULT 0,
    note        TEXT NOT NULL DEFAULT ''
);
"""


class NameTaken(Exception):
    """The name belongs to another container (its id is `owner`)."""

    def __init__(self, owner: str):
        super().__init__(owner)
        self.owner = owner


class Store(Protocol):
    def insert(self, record: Record) -> None: ...
    def get(self, id: str) -> Record | None: ...
    def by_name(self, name: str) -> Record | None: ...
    def by_prefix(self, prefix: str) -> list[Record]: ...
    def all(self) -> list[Record]: ...
    def set_started(self, id: str, at: float) -> None: ...
    def set_exit(self, id: str, exit: Exit) -> bool: ...
    def clear_run(self, id: str) -> None: ...
    def delete(self, id: str) -> None: ...
    def rename(self, id: str, name: str) -> None: ...
    def set_metadata(self, id: str, metadata: bytes) -> None: ...


class ContainerStore:
    def __init__(self, path: str):
        self.db = open_db(path, SCHEMA)

    def close(self) -> None:
        self.db.close()

    def insert(self, record: Record) -> None:
        try:
            with Transaction(self.db) as db:
                db.execute(
                    "INSERT INTO containers (id, name, labels, spec, metadata, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (record.id, record.name, json.dumps(record.labels), spec_to_json(record.spec),
                     record.metadata, record.created_at))
        except sqlite3.IntegrityError:
            owner = self.db.execute("SELECT id FROM containers WHERE name = ? OR id = ?",
                                    (record.name, record.id)).fetchone()
            raise NameTaken(owner["id"] if owner else "") from None

    def get(self, id: str) -> Record | None:
        row = self.db.execute("SELECT * FROM containers WHERE id = ?", (id,)).fetchone()
        return _record(row) if row else None

    def by_name(self, name: str) -> Record | None:
        row = self.db.execute("SELECT * FROM containers WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def by_prefix(self, prefix: str) -> list[Record]:
        # The caller validated the prefix as hex, so it holds no LIKE wildcards.
        rows = self.db.execute("SELECT * FROM containers WHERE id LIKE ? LIMIT 2", (prefix + "%",))
        return [_record(r) for r in rows]

    def all(self) -> list[Record]:
        return [_record(r) for r in self.db.execute("SELECT * FROM containers ORDER BY created_at")]

    def set_started(self, id: str, at: float) -> None:
        with Transaction(self.db) as db:
            db.execute("UPDATE containers SET started_at = ? WHERE id = ?", (at, id))

    def set_resources(self, id: str, resources: Resources) -> None:
        """Keeps limits changed by Update in the spec, so a restart of the container keeps them."""
        row = self.db.execute("SELECT spec FROM containers WHERE id = ?", (id,)).fetchone()
        if row is None:
            return
        spec = dataclasses.replace(spec_from_json(row["spec"]), resources=resources)
        with Transaction(self.db) as db:
            db.execute("UPDATE containers SET spec = ? WHERE id = ?", (spec_to_json(spec), id))

    def set_exit(self, id: str, exit: Exit) -> bool:
        """Records the exit once; False when it was already recorded or the row is gone."""
        with Transaction(self.db) as db:
            cur = db.execute(
                "UPDATE containers SET exit_code = ?, finished_at = ?, oom_killed = ?, note = ?"
                " WHERE id = ? AND exit_code IS NULL",
                (exit.code, exit.finished_at, int(exit.oom_killed), exit.note, id))
            return cur.rowcount == 1

    def clear_run(self, id: str) -> None:
        """A new run of a stopped container began: forget the last run's start and exit."""
        with Transaction(self.db) as db:
            db.execute("UPDATE containers SET started_at = 0, exit_code = NULL, finished_at = NULL,"
                       " oom_killed = 0, note = '' WHERE id = ?", (id,))

    def delete(self, id: str) -> None:
        with Transaction(self.db) as db:
            db.execute("DELETE FROM containers WHERE id = ?", (id,))

    def rename(self, id: str, name: str) -> None:
        """Raises NameTaken when another row has the name (the UNIQUE index decides, race-free)."""
        try:
            with Transaction(self.db) as db:
                db.execute("UPDATE containers SET name = ? WHERE id = ?", (name, id))
        except sqlite3.IntegrityError:
            owner = self.db.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
            raise NameTaken(owner["id"] if owner else "") from None

    def set_metadata(self, id: str, metadata: bytes) -> None:
        with Transaction(self.db) as db:
            db.execute("UPDATE containers SET metadata = ? WHERE id = ?", (metadata, id))


def _record(row: sqlite3.Row) -> Record:
    exit = None
    if row["exit_code"] is not None:
        exit = Exit(code=row["exit_code"], finished_at=row["finished_at"],
                    oom_killed=bool(row["oom_killed"]), note=row["note"])
    return Record(id=row["id"], name=row["name"], spec=spec_from_json(row["spec"]),
                  labels=json.loads(row["labels"]), metadata=bytes(row["metadata"]),
                  created_at=row["created_at"], started_at=row["started_at"], exit=exit)


def spec_to_json(spec: Spec) -> str:
    return json.dumps(dataclasses.asdict(spec), separators=(",", ":"))


def spec_from_json(text: str) -> Spec:
    d = json.loads(text)
    p = d["process"]
    return Spec(
        process=Process(args=tuple(p["args"]), env=tuple(p["env"]), cwd=p["cwd"], uid=p["uid"],
                        gid=p["gid"], additional_gids=tuple(p["additional_gids"]), user=p["user"]),
        rootfs=tuple(_mount(m) for m in d["rootfs"]),
        mounts=tuple(_mount(m) for m in d["mounts"]),
        netns_path=d["netns_path"], hostname=d["hostname"],
        resources=Resources(**d["resources"]), stop_signal=d["stop_signal"],
        readonly_rootfs=d["readonly_rootfs"], tty=d.get("tty", False),
        open_stdin=d.get("open_stdin", False), stdin_once=d.get("stdin_once", False))


def _mount(d: dict) -> Mount:
    return Mount(type=d["type"], source=d["source"], target=d["target"], options=tuple(d["options"]))
