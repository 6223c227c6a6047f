"""ContainerStore: container rows and the task event log in sqlite.

Schema (status is never stored, it is derived from conmon and its exit file,
so nothing here can go stale; the tables are created when missing, which is
all an older data root needs):

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

    events                           -- the task event log, in commit order
      seq          INTEGER PRIMARY KEY AUTOINCREMENT
                                     -- AUTOINCREMENT: a seq is never given twice,
                                     -- not even after pruning or a crash
      type         TEXT              -- model.EventType value
      container_id TEXT
      exec_id      TEXT              -- '' unless an exec event
      exit_code    INTEGER
      time         REAL              -- unix seconds
      (only the newest EVENT_RETENTION rows are kept)

    execs                            -- execs whose start was committed as an event
      exec_id      TEXT PRIMARY KEY
      container_id TEXT
      exited       INTEGER           -- 1 once its exit was committed as an event:
                                     -- reconcile commits an exit seen while the
                                     -- service was down, and only once

A state change and the event saying so commit in one transaction; the caller
publishes the returned events (which carry their seq) only after that.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from typing import Protocol

from services.common.sqlite import Transaction, open_db
from services.container.model import (Device, Event, EventType, Exit, IdMapping, LogConfig, Mount, Process,
                                      Record, Resources, Security, Spec, Ulimit, UserNamespace)

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
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    type         TEXT NOT NULL,
    container_id TEXT NOT NULL,
    exec_id      TEXT NOT NULL DEFAULT '',
    exit_code    INTEGER NOT NULL DEFAULT 0,
    time         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS execs (
    exec_id      TEXT PRIMARY KEY,
    container_id TEXT NOT NULL,
    exited       INTEGER NOT NULL DEFAULT 0
);
"""

# The event log keeps at least this many newest events (and at most PRUNE_EVERY
# more): a subscriber (the gateway) may miss that many and still resume without
# loss. About 100 bytes a row, so some 5 MB on disk.
EVENT_RETENTION = 50_000
# Pruning runs once per this many commits of a service process, not on every one.
PRUNE_EVERY = 500


class NameTaken(Exception):
    """The name belongs to another container (its id is `owner`)."""

    def __init__(self, owner: str):
        super().__init__(owner)
        self.owner = owner


class Pruned(Exception):
    """Events after the position asked for are no longer (or not yet) in the log."""


class Store(Protocol):
    def insert(self, record: Record) -> None: ...
    def get(self, id: str) -> Record | None: ...
    def by_name(self, name: str) -> Record | None: ...
    def by_prefix(self, prefix: str) -> list[Record]: ...
    def all(self) -> list[Record]: ...
    def set_started(self, id: str, at: float) -> Event: ...
    def set_exit(self, id: str, exit: Exit) -> list[Event]: ...
    def clear_run(self, id: str) -> None: ...
    def delete(self, id: str) -> Event: ...
    def forget(self, id: str) -> None: ...
    def rename(self, id: str, name: str) -> None: ...
    def set_metadata(self, id: str, metadata: bytes) -> None: ...
    def append(self, event: Event) -> Event: ...
    def exec_started(self, event: Event) -> Event: ...
    def exec_exited(self, event: Event) -> Event | None: ...
    def exec_exit_committed(self, exec_id: str) -> bool | None: ...
    def events_after(self, seq: int, limit: int) -> list[Event]: ...
    def last_seq(self) -> int: ...


class ContainerStore:
    def __init__(self, path: str):
        self.db = open_db(path, SCHEMA)
        self._commits = 0

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

    def set_started(self, id: str, at: float) -> Event:
        with Transaction(self.db) as db:
            db.execute("UPDATE containers SET started_at = ? WHERE id = ?", (at, id))
            return self._append(db, Event(EventType.START, id, at))

    def set_resources(self, id: str, resources: Resources) -> None:
        """Keeps limits changed by Update in the spec, so a restart of the container keeps them."""
        row = self.db.execute("SELECT spec FROM containers WHERE id = ?", (id,)).fetchone()
        if row is None:
            return
        spec = dataclasses.replace(spec_from_json(row["spec"]), resources=resources)
        with Transaction(self.db) as db:
            db.execute("UPDATE containers SET spec = ? WHERE id = ?", (spec_to_json(spec), id))

    def set_exit(self, id: str, exit: Exit) -> list[Event]:
        """Records the exit once, with its events (OOM first, then EXIT); none when it was
        already recorded or the row is gone."""
        with Transaction(self.db) as db:
            cur = db.execute(
                "UPDATE containers SET exit_code = ?, finished_at = ?, oom_killed = ?, note = ?"
                " WHERE id = ? AND exit_code IS NULL",
                (exit.code, exit.finished_at, int(exit.oom_killed), exit.note, id))
            if cur.rowcount != 1:
                return []
            events = [Event(EventType.OOM, id, exit.finished_at)] if exit.oom_killed else []
            events.append(Event(EventType.EXIT, id, exit.finished_at, exit.code))
            return [self._append(db, e) for e in events]

    def clear_run(self, id: str) -> None:
        """A new run of a stopped container began: forget the last run's start and exit."""
        with Transaction(self.db) as db:
            db.execute("UPDATE containers SET started_at = 0, exit_code = NULL, finished_at = NULL,"
                       " oom_killed = 0, note = '' WHERE id = ?", (id,))

    def delete(self, id: str) -> Event:
        with Transaction(self.db) as db:
            db.execute("DELETE FROM containers WHERE id = ?", (id,))
            db.execute("DELETE FROM execs WHERE container_id = ?", (id,))
            return self._append(db, Event(EventType.DELETE, id, time.time()))

    def forget(self, id: str) -> None:
        """Drops the row of a create that failed: nothing was announced, so no event."""
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

    # -- the event log ------------------------------------------------------------

    def append(self, event: Event) -> Event:
        """Commits an event that goes with no other change; returns it with its seq."""
        with Transaction(self.db) as db:
            return self._append(db, event)

    def exec_started(self, event: Event) -> Event:
        with Transaction(self.db) as db:
            db.execute("INSERT OR IGNORE INTO execs (exec_id, container_id) VALUES (?, ?)",
                       (event.exec_id, event.container_id))
            return self._append(db, event)

    def exec_exited(self, event: Event) -> Event | None:
        """Commits an exec's exit event once; None when it was committed before. An exec
        started before this table existed has no row and gets its exit committed too."""
        with Transaction(self.db) as db:
            cur = db.execute("INSERT INTO execs (exec_id, container_id, exited) VALUES (?, ?, 1)"
                             " ON CONFLICT (exec_id) DO UPDATE SET exited = 1 WHERE exited = 0",
                             (event.exec_id, event.container_id))
            if cur.rowcount != 1:
                return None
            # An exec of a container already deleted: its row has no one to serve.
            db.execute("DELETE FROM execs WHERE exec_id = ? AND container_id NOT IN"
                       " (SELECT id FROM containers)", (event.exec_id,))
            return self._append(db, event)

    def exec_exit_committed(self, exec_id: str) -> bool | None:
        """Whether the exec's exit was committed; None when not even its start was."""
        row = self.db.execute("SELECT exited FROM execs WHERE exec_id = ?", (exec_id,)).fetchone()
        return None if row is None else bool(row["exited"])

    def events_after(self, seq: int, limit: int) -> list[Event]:
        """Up to `limit` events with a seq above `seq`, oldest first. Raises Pruned when some
        after `seq` were pruned or `seq` is beyond the newest seq ever given."""
        rows = self.db.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                               (seq, limit)).fetchall()
        if rows and rows[0]["seq"] == seq + 1:
            return [_event(r) for r in rows]
        # Seqs are contiguous (a rolled-back seq is given again, never published), so a
        # gap in front of the first row means pruning.
        first = self.db.execute("SELECT MIN(seq) AS s FROM events").fetchone()["s"]
        last = self.last_seq()
        if seq > last:
            raise Pruned(f"event position {seq} is ahead of the newest event {last}: "
                         "the event log was replaced")
        if seq < last and (first is None or seq < first - 1):
            raise Pruned(f"events after {seq} were pruned; the oldest retained event is "
                         f"{first or last + 1}")
        return [_event(r) for r in rows]

    def last_seq(self) -> int:
        """The newest seq ever given (pruned or not), 0 before the first event."""
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return row["seq"] if row else 0

    def _append(self, db: sqlite3.Connection, event: Event) -> Event:
        cur = db.execute("INSERT INTO events (type, container_id, exec_id, exit_code, time)"
                         " VALUES (?, ?, ?, ?, ?)",
                         (event.type.value, event.container_id, event.exec_id, event.exit_code,
                          event.time))
        self._commits += 1
        if self._commits % PRUNE_EVERY == 0:
            db.execute("DELETE FROM events WHERE seq <= ?", (cur.lastrowid - EVENT_RETENTION,))
        return dataclasses.replace(event, seq=cur.lastrowid)


def _event(row: sqlite3.Row) -> Event:
    return Event(type=EventType(row["type"]), container_id=row["container_id"], time=row["time"],
                 exit_code=row["exit_code"], exec_id=row["exec_id"], seq=row["seq"])


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
        open_stdin=d.get("open_stdin", False), stdin_once=d.get("stdin_once", False),
        # Rows from before log drivers have none: they get the daemon default.
        log_config=LogConfig(driver=lc.get("driver", ""),
                             options=tuple(tuple(o) for o in lc.get("options", ())))
        if (lc := d.get("log_config")) else LogConfig(),
        # Rows from before confinement options have none: docker's defaults.
        security=_security(d.get("security") or {}), runtime=d.get("runtime", ""),
        system_paths=(tuple(sp[0]), tuple(sp[1])) if (sp := d.get("system_paths")) is not None else None,
        userns=_userns(d.get("userns")), cgroupns_private=d.get("cgroupns_private", False))


def _security(d: dict) -> Security:
    fields = {f.name for f in dataclasses.fields(Security)}
    d = {k: v for k, v in d.items() if k in fields}
    for key in ("cap_add", "cap_drop", "device_cgroup_rules", "group_add"):
        d[key] = tuple(d.get(key, ()))
    d["sysctls"] = tuple(tuple(kv) for kv in d.get("sysctls", ()))
    d["devices"] = tuple(Device(**x) for x in d.get("devices", ()))
    d["ulimits"] = tuple(Ulimit(**x) for x in d.get("ulimits", ()))
    return Security(**d)


def _userns(d: dict | None) -> UserNamespace:
    # Rows from before user namespaces ran in the host's.
    if not d:
        return UserNamespace(mode="host")
    return UserNamespace(mode=d["mode"],
                         uid_mappings=tuple(IdMapping(**m) for m in d["uid_mappings"]),
                         gid_mappings=tuple(IdMapping(**m) for m in d["gid_mappings"]))


def _mount(d: dict) -> Mount:
    return Mount(type=d["type"], source=d["source"], target=d["target"], options=tuple(d["options"]),
                 create_source=d.get("create_source", False), sub_path=d.get("sub_path", ""))
