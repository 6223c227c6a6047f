"""GatewayStore: what the public API knows about containers, and the engine's event log.

Schema (PRAGMA user_version is the schema version; MIGRATIONS brings an older file up):

    containers                                   -- one row per container the API made
      id               TEXT PRIMARY KEY          -- the container service's id (64 hex)
      name             TEXT NOT NULL             -- without "/"; the container service is the
                                                 -- authority on uniqueness, this is its copy
      image            TEXT NOT NULL             -- as the user wrote it ("busybox")
      image_id         TEXT NOT NULL             -- "sha256:..." it resolved to at create
      config           BLOB NOT NULL             -- engine.v1.ContainerConfig, serialized
      network_mode     TEXT NOT NULL
      mounts           BLOB NOT NULL             -- the resolved MountPoints, as a serialized ContainerInfo holding only them
      auto_remove      INTEGER NOT NULL          -- --rm
      stop_timeout     INTEGER NOT NULL          -- seconds
      restart_count    INTEGER NOT NULL          -- what the restart policy has done so far
      manually_stopped INTEGER NOT NULL          -- the user stopped it: the policy rests
      health           TEXT                      -- JSON of the last healthcheck state, or NULL

    events                                       -- the engine's event log, bounded
      seq              INTEGER PRIMARY KEY       -- Engine Event.seq: strictly increasing
      time             REAL NOT NULL             -- unix seconds
      type, action, actor_id TEXT NOT NULL
      attributes       TEXT NOT NULL             -- JSON object

    execs                                        -- users' execs, for their events' command
      exec_id          TEXT PRIMARY KEY          -- after a gateway restart too (healthcheck
      container_id     TEXT NOT NULL             -- probes are not kept: an exec not found
      cmd              TEXT NOT NULL             -- here is one of those, and has no events)

    cursors                                      -- how far an upstream stream was handled
      stream           TEXT PRIMARY KEY          -- "container": the container service's task events
      seq              INTEGER NOT NULL          -- the last TaskEvent.seq handled

Events derived from a task event and the cursor past it are written in one
transaction, so after a crash each task event is handled exactly once.
The row is the commit point of a container's API record: it is written before
the container service's Create and removed after its Delete, so a crash leaves
at most a row without a container, which `reconcile` drops at start.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from berth.engine.v1 import engine_pb2
from services.common.sqlite import Transaction, open_db

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    image            TEXT NOT NULL,
    image_id         TEXT NOT NULL,
    config           BLOB NOT NULL,
    network_mode     TEXT NOT NULL,
    mounts           BLOB NOT NULL,
    auto_remove      INTEGER NOT NULL,
    stop_timeout     INTEGER NOT NULL,
    restart_count    INTEGER NOT NULL DEFAULT 0,
    manually_stopped INTEGER NOT NULL DEFAULT 0,
    health           TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    time       REAL NOT NULL,
    type       TEXT NOT NULL,
    action     TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS execs (
    exec_id      TEXT PRIMARY KEY,
    container_id TEXT NOT NULL,
    cmd          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    stream TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
);
"""

# version -> SQL that brings a file at version-1 to it. Version 1 is the first; a later
# change of the schema adds its step here and bumps SCHEMA_VERSION.
MIGRATIONS: dict[int, str] = {}

DEFAULT_STOP_TIMEOUT = 10
# The event log is cut back to its bound once every this many events, not on each one:
# between two cuts it holds up to this many more.
TRIM_EVERY = 256


@dataclass(frozen=True)
class ContainerRecord:
    """A container as the public API made it."""

    id: str
    name: str
    image: str
    image_id: str
    config: engine_pb2.ContainerConfig
    network_mode: str
    auto_remove: bool = False
    stop_timeout: int = DEFAULT_STOP_TIMEOUT
    # The container's mounts as resolved (volume names included), for inspect and --volumes-from.
    mounts: tuple[engine_pb2.MountPoint, ...] = ()
    restart_count: int = 0
    manually_stopped: bool = False
    # The last healthcheck state (services.gateway.backends.health.State as JSON).
    health: str | None = None

    def replace(self, **changes) -> ContainerRecord:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    time: float
    type: str
    action: str
    actor_id: str
    attributes: dict[str, str]


class GatewayStore:
    def __init__(self, path: str):
        self._db = open_db(path, SCHEMA)
        self._migrate()
        # Every container row, parsed once: the gateway is the store's only writer, and
        # events, listings and the run path read records far more often than they change.
        # Records are frozen; their config is shared, so it is replaced, never changed.
        self._records: dict[str, ContainerRecord] = {r.id: r for r in map(
            _record, self._db.execute("SELECT * FROM containers"))}

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"gateway store is at schema version {version}, newer than this "
                               f"gateway's {SCHEMA_VERSION}")
        with Transaction(self._db) as db:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                if step in MIGRATIONS:
                    db.executescript(MIGRATIONS[step])
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # -- containers -------------------------------------------------------------------

    def put(self, record: ContainerRecord) -> None:
        """Insert or replace the whole record."""
        with Transaction(self._db) as db:
            db.execute(
                "INSERT OR REPLACE INTO containers (id, name, image, image_id, config, network_mode,"
                " mounts, auto_remove, stop_timeout, restart_count, manually_stopped, health)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.name, record.image, record.image_id,
                 record.config.SerializeToString(), record.network_mode,
                 _mounts_bytes(record.mounts), int(record.auto_remove), record.stop_timeout,
                 record.restart_count, int(record.manually_stopped), record.health))
        self._records[record.id] = record

    def get(self, cid: str) -> ContainerRecord | None:
        return self._records.get(cid)

    def all(self) -> list[ContainerRecord]:
        return list(self._records.values())

    def delete(self, cid: str) -> None:
        """The container's record and its execs' rows.

        Without an fsync: it follows the container service's durable delete, and a row a
        machine crash brings back has no container, which reconcile drops at start."""
        with Transaction(self._db, durable=False) as db:
            db.execute("DELETE FROM containers WHERE id = ?", (cid,))
            db.execute("DELETE FROM execs WHERE container_id = ?", (cid,))
        self._records.pop(cid, None)

    # -- execs ------------------------------------------------------------------------

    def put_exec(self, exec_id: str, container_id: str, cmd: str) -> None:
        with Transaction(self._db) as db:
            db.execute("INSERT OR REPLACE INTO execs (exec_id, container_id, cmd) VALUES (?, ?, ?)",
                       (exec_id, container_id, cmd))

    def get_exec(self, exec_id: str) -> tuple[str, str] | None:
        """(container id, command) of a user's exec."""
        row = self._db.execute("SELECT container_id, cmd FROM execs WHERE exec_id = ?", (exec_id,)).fetchone()
        return (row[0], row[1]) if row is not None else None

    def delete_exec(self, exec_id: str) -> None:
        with Transaction(self._db) as db:
            db.execute("DELETE FROM execs WHERE exec_id = ?", (exec_id,))

    # -- events -----------------------------------------------------------------------

    def append_events(self, events: Sequence[tuple[float, str, str, str, dict]],
                      cursor: tuple[str, int] | None = None, keep: int = 0) -> list[int]:
        """Appends (time, type, action, actor_id, attributes) rows and, in the same
        transaction, moves `cursor` (stream, seq); keeps (about) the newest `keep` rows.
        Returns the seqs.

        Committed without an fsync: events are a log, not what a user stored (dockerd keeps
        them in memory only), and a tail a machine crash takes comes back with its cursor
        from the container service's durable stream."""
        seqs = []
        with Transaction(self._db, durable=False) as db:
            for time, type_, action, actor_id, attributes in events:
                cur = db.execute(
                    "INSERT INTO events (time, type, action, actor_id, attributes) VALUES (?, ?, ?, ?, ?)",
                    (time, type_, action, actor_id, json.dumps(attributes, separators=(",", ":"))))
                seqs.append(cur.lastrowid)
            if cursor is not None:
                db.execute("INSERT OR REPLACE INTO cursors (stream, seq) VALUES (?, ?)", cursor)
            if keep and any(seq % TRIM_EVERY == 0 for seq in seqs):
                db.execute("DELETE FROM events WHERE seq <= ?", (seqs[-1] - keep,))
        return seqs

    def events(self, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit or -1))
        return [StoredEvent(r["seq"], r["time"], r["type"], r["action"], r["actor_id"],
                            json.loads(r["attributes"])) for r in rows]

    def last_events(self, count: int) -> list[StoredEvent]:
        rows = self._db.execute("SELECT * FROM events ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
        return [StoredEvent(r["seq"], r["time"], r["type"], r["action"], r["actor_id"],
                            json.loads(r["attributes"])) for r in reversed(rows)]

    def cursor(self, stream: str) -> int | None:
        row = self._db.execute("SELECT seq FROM cursors WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row is not None else None

    def clear_cursor(self, stream: str) -> None:
        with Transaction(self._db) as db:
            db.execute("DELETE FROM cursors WHERE stream = ?", (stream,))


def _mounts_bytes(mounts: Iterable[engine_pb2.MountPoint]) -> bytes:
    # A ContainerInfo carries exactly a repeated MountPoint: the message to serialize them in.
    return engine_pb2.ContainerInfo(mounts=list(mounts)).SerializeToString()


def _record(row: sqlite3.Row) -> ContainerRecord:
    config = engine_pb2.ContainerConfig()
    config.ParseFromString(row["config"])
    holder = engine_pb2.ContainerInfo()
    holder.ParseFromString(row["mounts"])
    return ContainerRecord(
        id=row["id"], name=row["name"], image=row["image"], image_id=row["image_id"], config=config,
        network_mode=row["network_mode"], auto_remove=bool(row["auto_remove"]),
        stop_timeout=row["stop_timeout"], mounts=tuple(holder.mounts),
        restart_count=row["restart_count"], manually_stopped=bool(row["manually_stopped"]),
        health=row["health"])
