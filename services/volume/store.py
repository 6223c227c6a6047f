"""VolumeStore: the volumes this node knows.

    volumes
    +------------+-------------------------------+
    | name       | TEXT PK                       |
    | driver     | TEXT ("local")                |
    | labels     | TEXT json                     |
    | created_at | TEXT iso-8601 UTC             |
    +------------+-------------------------------+

The data itself lives on disk at <state_dir>/volumes/<name>/_data; the row is
the commit point: a volume exists when its row does.
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
"""


@dataclass(frozen=True)
class Volume:
    name: str
    driver: str
    mountpoint: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    driver: str
    labels: dict[str, str]
    created_at: str


class Store(Protocol):
    def get(self, name: str) -> VolumeRecord | None: ...
    def list(self) -> list[VolumeRecord]: ...
    def add(self, record: VolumeRecord) -> bool: ...
    def remove(self, name: str) -> bool: ...


class VolumeStore:
    """The sqlite implementation of Store."""

    def __init__(self, path: str):
        self.db = open_db(path, SCHEMA)

    def close(self) -> None:
        self.db.close()

    def get(self, name: str) -> VolumeRecord | None:
        row = self.db.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def list(self) -> list[VolumeRecord]:
        return [_record(r) for r in self.db.execute("SELECT * FROM volumes ORDER BY name")]

    def add(self, record: VolumeRecord) -> bool:
        """Insert; False when the name is already taken."""
        with Transaction(self.db) as tx:
            cur = tx.execute("INSERT OR IGNORE INTO volumes (name, driver, labels, created_at)"
                             " VALUES (?, ?, ?, ?)",
                             (record.name, record.driver, json.dumps(record.labels),
                              record.created_at))
            return cur.rowcount == 1

    def remove(self, name: str) -> bool:
        with Transaction(self.db) as tx:
            return tx.execute("DELETE FROM volumes WHERE name = ?", (name,)).rowcount == 1


def _record(row: sqlite3.Row) -> VolumeRecord:
    return VolumeRecord(name=row["name"], driver=row["driver"],
                        labels=json.loads(row["labels"]), created_at=row["created_at"])
