"""sqlite opened the same way by every service's store.

WAL journaling and synchronous=FULL: a committed transaction survives a crash
of the service or of the machine. Schemas are applied idempotently at open.

A transaction may be opened `durable=False` for rows that can be derived again
from somewhere durable: it commits without an fsync (synchronous=NORMAL). In WAL
mode such a commit still survives a crash or kill of the service (it is in the
operating system's page cache); only a crash of the machine can lose it, and
then only with the commits after the last durable one, because the next FULL
commit's fsync of the WAL carries every frame before it: the order is kept.
"""

from __future__ import annotations

import os
import sqlite3


def open_db(path: str, schema: str) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(schema)
    return db


class Transaction:
    """`with Transaction(db):` runs the block in one IMMEDIATE transaction; with
    `durable=False`, committed without an fsync (see the module's docstring)."""

    def __init__(self, db: sqlite3.Connection, durable: bool = True):
        self.db = db
        self.durable = durable

    def __enter__(self) -> sqlite3.Connection:
        if not self.durable:
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            if not self.durable:
                self.db.execute("PRAGMA synchronous=FULL")
