"""CacheStore: the build cache index, step key -> the image that step made.

    cache
    +-------------+------------------------------------------------------+
    | key         | TEXT PK  sha256 of parent image, instruction, inputs |
    | parent_id   | TEXT     the image the step started from             |
    | image_id    | TEXT     the image it made (in the image service)    |
    | description | TEXT     the instruction, for a person               |
    | created     | TEXT     iso-8601 UTC                                |
    | last_used   | TEXT     iso-8601 UTC, "" when never re-used         |
    | usage_count | INTEGER  times a build re-used it                    |
    +-------------+------------------------------------------------------+

The images themselves live in the image service; a row whose image is gone
(removed by `rmi` or an image prune) is a miss, and is dropped when found so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from services.common.sqlite import Transaction, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key         TEXT PRIMARY KEY,
    parent_id   TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    description TEXT NOT NULL,
    created     TEXT NOT NULL,
    last_used   TEXT NOT NULL DEFAULT '',
    usage_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS cache_image ON cache(image_id);
"""


@dataclass(frozen=True)
class CacheEntry:
    key: str
    parent_id: str
    image_id: str
    description: str
    created: str
    last_used: str = ""
    usage_count: int = 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class CacheStore:
    def __init__(self, path: str):
        self.db = open_db(path, SCHEMA)
        # An index of what the image service holds, rebuilt by building again: a crash
        # of the machine may forget the last rows (WAL keeps the file consistent), which
        # is worth not waiting for an fsync on every step and every cache hit.
        self.db.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        self.db.close()

    def get(self, key: str) -> CacheEntry | None:
        row = self.db.execute("SELECT * FROM cache WHERE key = ?", (key,)).fetchone()
        return CacheEntry(**dict(row)) if row else None

    def put(self, key: str, parent_id: str, image_id: str, description: str) -> None:
        with Transaction(self.db) as db:
            db.execute("INSERT OR REPLACE INTO cache (key, parent_id, image_id, description, created) "
                       "VALUES (?, ?, ?, ?, ?)", (key, parent_id, image_id, description, _now()))

    def used(self, key: str) -> None:
        with Transaction(self.db) as db:
            db.execute("UPDATE cache SET last_used = ?, usage_count = usage_count + 1 WHERE key = ?",
                       (_now(), key))

    def delete(self, keys: list[str]) -> None:
        with Transaction(self.db) as db:
            db.executemany("DELETE FROM cache WHERE key = ?", [(k,) for k in keys])

    def all(self) -> list[CacheEntry]:
        return [CacheEntry(**dict(r)) for r in self.db.execute("SELECT * FROM cache")]

    def parents(self) -> dict[str, str]:
        """image id -> the image its step started from, for every cached step."""
        return {r["image_id"]: r["parent_id"] for r in self.db.execute(
            "SELECT image_id, parent_id FROM cache")}
