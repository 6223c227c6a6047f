"""ImageStore: image records, names and snapshots in sqlite.

Schema:

    images    id TEXT PK ("sha256:<config hex>") | manifest_digest | config_json BLOB
              | stored_at (unix seconds) | labels (json object)
              | parent (the image it was committed or created from; '' for pulled/loaded ones)
    layers    image_id -> images.id (cascade) | idx (0 = lowest) | diff_id | digest
              | media_type | size                          PK (image_id, idx)
    tags      name TEXT PK (full "docker.io/library/busybox:latest") | image_id -> images.id (cascade)
    snapshots key TEXT PK | image_id (no foreign key: a forced rmi leaves the
              snapshot behind) | labels (json) | created | chain_ids (json, top first)

The blobs themselves live in the content store; this database says which
ones are reachable.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from typing import Protocol

from services.common.errors import AlreadyExists
from services.common.sqlite import Transaction, open_db
from services.image.model import ImageRecord, Layer, SnapshotRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    config_json BLOB NOT NULL,
    stored_at REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    parent TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_by_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    chain_ids TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_image ON snapshots(image_id);
"""


class Store(Protocol):
    def get_image(self, image_id: str) -> ImageRecord | None: ...
    def image_ids_with_prefix(self, hex_prefix: str) -> list[str]: ...
    def image_ids_with_manifest(self, digest: str) -> list[str]: ...
    def image_for_tag(self, name: str) -> str | None: ...
    def tags_of(self, image_id: str) -> list[str]: ...
    def all_tags(self) -> dict[str, list[str]]: ...
    def list_images(self) -> list[ImageRecord]: ...
    def put_images(self, images: list[tuple[ImageRecord, list[str]]]) -> None: ...
    def set_tag(self, name: str, image_id: str) -> None: ...
    def remove_tag(self, name: str) -> None: ...
    def delete_image(self, image_id: str) -> list[str]: ...
    def add_snapshot(self, snap: SnapshotRecord) -> None: ...
    def get_snapshot(self, key: str) -> SnapshotRecord | None: ...
    def delete_snapshot(self, key: str) -> bool: ...
    def list_snapshots(self) -> list[SnapshotRecord]: ...
    def snapshots_of(self, image_id: str) -> list[SnapshotRecord]: ...


def _ts(dt: datetime) -> float:
    return dt.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class ImageStore:
    """The sqlite store. One connection shared by threads, serialised by a lock."""

    def __init__(self, path: str):
        self._db = open_db(path, SCHEMA)
        self._lock = threading.RLock()
        if "parent" not in {r["name"] for r in self._db.execute("PRAGMA table_info(images)")}:
            # Databases made before parents were kept: their images have none.
            self._db.execute("ALTER TABLE images ADD COLUMN parent TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- images -------------------------------------------------------------

    def _layers(self, image_id: str) -> tuple[Layer, ...]:
        rows = self._db.execute(
            "SELECT diff_id, digest, media_type, size FROM layers WHERE image_id=? ORDER BY idx",
            (image_id,)).fetchall()
        return tuple(Layer(r["diff_id"], r["digest"], r["media_type"], r["size"]) for r in rows)

    def _record(self, row: sqlite3.Row) -> ImageRecord:
        return ImageRecord(
            id=row["id"], manifest_digest=row["manifest_digest"],
            config_json=bytes(row["config_json"]), layers=self._layers(row["id"]),
            stored_at=_dt(row["stored_at"]), labels=json.loads(row["labels"]), parent=row["parent"])

    def get_image(self, image_id: str) -> ImageRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM images WHERE id=?", (image_id,)).fetchone()
            return self._record(row) if row else None

    def image_ids_with_prefix(self, hex_prefix: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM images WHERE substr(id, 8, ?) = ?",
                (len(hex_prefix), hex_prefix)).fetchall()
            return [r["id"] for r in rows]

    def image_ids_with_manifest(self, digest: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM images WHERE manifest_digest=?", (digest,)).fetchall()
            return [r["id"] for r in rows]

    def image_for_tag(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT image_id FROM tags WHERE name=?", (name,)).fetchone()
            return row["image_id"] if row else None

    def tags_of(self, image_id: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM tags WHERE image_id=? ORDER BY name", (image_id,)).fetchall()
            return [r["name"] for r in rows]

    def all_tags(self) -> dict[str, list[str]]:
        with self._lock:
            out: dict[str, list[str]] = {}
            for r in self._db.execute("SELECT name, image_id FROM tags ORDER BY name"):
                out.setdefault(r["image_id"], []).append(r["name"])
            return out

    def list_images(self) -> list[ImageRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM images ORDER BY stored_at DESC, id").fetchall()
            return [self._record(r) for r in rows]

    def put_images(self, images: list[tuple[ImageRecord, list[str]]]) -> None:
        """Store images and point their names at them, all in one transaction.

        An image already stored keeps its record (same id, same content); a
        name that pointed elsewhere moves, leaving the old image unnamed.
        """
        with self._lock, Transaction(self._db) as db:
            for record, tags in images:
                exists = db.execute("SELECT 1 FROM images WHERE id=?", (record.id,)).fetchone()
                if not exists:
                    db.execute(
                        "INSERT INTO images (id, manifest_digest, config_json, stored_at, labels, parent)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (record.id, record.manifest_digest, record.config_json,
                         _ts(record.stored_at), json.dumps(record.labels, sort_keys=True), record.parent))
                    db.executemany(
                        "INSERT INTO layers (image_id, idx, diff_id, digest, media_type, size)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [(record.id, i, layer.diff_id, layer.digest, layer.media_type, layer.size)
                         for i, layer in enumerate(record.layers)])
                for name in tags:
                    db.execute("INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)",
                               (name, record.id))

    def set_tag(self, name: str, image_id: str) -> None:
        with self._lock, Transaction(self._db) as db:
            db.execute("INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)", (name, image_id))

    def remove_tag(self, name: str) -> None:
        with self._lock, Transaction(self._db) as db:
            db.execute("DELETE FROM tags WHERE name=?", (name,))

    def delete_image(self, image_id: str) -> list[str]:
        """Delete the record with its layers and names; returns the names it had."""
        with self._lock, Transaction(self._db) as db:
            tags = [r["name"] for r in db.execute(
                "SELECT name FROM tags WHERE image_id=? ORDER BY name", (image_id,))]
            db.execute("DELETE FROM images WHERE id=?", (image_id,))
            return tags

    # -- snapshots ------------------------------------------------------------

    @staticmethod
    def _snapshot(row: sqlite3.Row) -> SnapshotRecord:
        return SnapshotRecord(
            key=row["key"], image_id=row["image_id"], labels=json.loads(row["labels"]),
            created=_dt(row["created"]), chain_ids=tuple(json.loads(row["chain_ids"])))

    def add_snapshot(self, snap: SnapshotRecord) -> None:
        with self._lock:
            try:
                with Transaction(self._db) as db:
                    db.execute(
                        "INSERT INTO snapshots (key, image_id, labels, created, chain_ids)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (snap.key, snap.image_id, json.dumps(snap.labels, sort_keys=True),
                         _ts(snap.created), json.dumps(list(snap.chain_ids))))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {snap.key} already exists") from None

    def get_snapshot(self, key: str) -> SnapshotRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM snapshots WHERE key=?", (key,)).fetchone()
            return self._snapshot(row) if row else None

    def delete_snapshot(self, key: str) -> bool:
        with self._lock, Transaction(self._db) as db:
            return db.execute("DELETE FROM snapshots WHERE key=?", (key,)).rowcount > 0

    def list_snapshots(self) -> list[SnapshotRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM snapshots ORDER BY created, key").fetchall()
            return [self._snapshot(r) for r in rows]

    def snapshots_of(self, image_id: str) -> list[SnapshotRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM snapshots WHERE image_id=? ORDER BY created, key",
                (image_id,)).fetchall()
            return [self._snapshot(r) for r in rows]
