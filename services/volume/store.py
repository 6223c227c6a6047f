"""VolumeStore: the volumes this node knows and who holds them.

    volumes                                          refs
    +------------+---------------------------+       +--------+-------------------------+
    | name       | TEXT PK                   |<------| volume | TEXT FK volumes.name    |
    | driver     | TEXT ("local")            |       | ref    | TEXT (e.g. container id)|
    | labels     | TEXT json                 |       +--------+-------------------------+
    | options    | TEXT json (type, o, dev)  |       PK (volume, ref)
    | created_at | TEXT iso-8601 UTC         |
    +------------+---------------------------+

The data itself lives on disk at <state_dir>/volumes/<name>/_data; the row is
the commit point: a volume exists when its row does. A volume with refs rows
is in use; the refs are what make "in use" survive restarts.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Protocol

from services.common.sqlite import Transaction, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name       TEXT PRIMARY KEY,
    driver     TEXT NOT NULL,
    labels     TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refs (
    volume TEXT NOT NULL REFERENCES volumes(name),
    ref    TEXT NOT NULL,
    PRIMARY KEY (volume, ref)
);
"""


@dataclass(frozen=True)
class Volume:
    name: str
    driver: str
    mountpoint: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    options: dict[str, str] = field(default_factory=dict)
    refs: tuple[str, ...] = ()
    size: int = -1


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    driver: str
    labels: dict[str, str]
    created_at: str
    options: dict[str, str] = field(default_factory=dict)
    refs: tuple[str, ...] = ()


class Store(Protocol):
    def get(self, name: str) -> VolumeRecord | None: ...
    def list(self) -> list[VolumeRecord]: ...
    def add(self, record: VolumeRecord) -> bool: ...
    def remove(self, name: str) -> bool: ...
    def add_ref(self, name: str, ref: str) -> bool: ...
    def remove_refs(self, ref: str, names: list[str]) -> list[str]: ...


class VolumeStore:
    """The sqlite implementation of Store."""

    def __init__(self, path: str):
        self.db = open_db(path, SCHEMA)
        columns = {r["name"] for r in self.db.execute("PRAGMA table_info(volumes)")}
        if "options" not in columns:
            # Databases made before driver options existed.
            self.db.execute("ALTER TABLE volumes ADD COLUMN options TEXT NOT NULL DEFAULT '{}'")

    def close(self) -> None:
        self.db.close()

    def get(self, name: str) -> VolumeRecord | None:
        row = self.db.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        return self._record(row) if row else None

    def list(self) -> list[VolumeRecord]:
        refs: dict[str, list[str]] = {}
        for r in self.db.execute("SELECT volume, ref FROM refs ORDER BY ref"):
            refs.setdefault(r["volume"], []).append(r["ref"])
        return [_record(r, refs.get(r["name"], ()))
                for r in self.db.execute("SELECT * FROM volumes ORDER BY name")]

    def add(self, record: VolumeRecord) -> bool:
        """Insert; False when the name is already taken."""
        with Transaction(self.db) as tx:
            cur = tx.execute("INSERT OR IGNORE INTO volumes (name, driver, labels, options, created_at)"
                             " VALUES (?, ?, ?, ?, ?)",
                             (record.name, record.driver, json.dumps(record.labels),
                              json.dumps(record.options), record.created_at))
            return cur.rowcount == 1

    def remove(self, name: str) -> bool:
        """Delete a volume without references; False when unknown."""
        with Transaction(self.db) as tx:
            return tx.execute("DELETE FROM volumes WHERE name = ?", (name,)).rowcount == 1

    def add_ref(self, name: str, ref: str) -> bool:
        """Record `ref` on `name`; True when it is the volume's first reference."""
        with Transaction(self.db) as tx:
            before = tx.execute("SELECT count(*) FROM refs WHERE volume = ?", (name,)).fetchone()[0]
            cur = tx.execute("INSERT OR IGNORE INTO refs (volume, ref) VALUES (?, ?)", (name, ref))
            return before == 0 and cur.rowcount == 1

    def remove_refs(self, ref: str, names: list[str]) -> list[str]:
        """Drop `ref` from `names` (all it holds when empty); the volumes it was dropped from."""
        with Transaction(self.db) as tx:
            held = [r["volume"] for r in tx.execute(
                "SELECT volume FROM refs WHERE ref = ? ORDER BY volume", (ref,))]
            if names:
                held = [n for n in held if n in set(names)]
            tx.executemany("DELETE FROM refs WHERE volume = ? AND ref = ?", [(n, ref) for n in held])
            return held

    def _record(self, row: sqlite3.Row) -> VolumeRecord:
        refs = [r["ref"] for r in self.db.execute(
            "SELECT ref FROM refs WHERE volume = ? ORDER BY ref", (row["name"],))]
        return _record(row, refs)


def _record(row: sqlite3.Row, refs) -> VolumeRecord:
    return VolumeRecord(name=row["name"], driver=row["driver"], labels=json.loads(row["labels"]),
                        created_at=row["created_at"], options=json.loads(row["options"]),
                        refs=tuple(refs))
