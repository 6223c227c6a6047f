"""VolumeService: named volumes with the local driver.

A volume is a directory <state_dir>/volumes/<name>/_data that a container
mounts with a bind. volumes/ and volumes/<name> are root-only so that users
on the host cannot reach into a container's data; _data itself keeps 0755
because it becomes the root of the mount the container's users see.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
from datetime import datetime, timezone

import structlog

from services.common.errors import InvalidArgument, NotFound
from services.volume.store import Store, Volume, VolumeRecord

log = structlog.get_logger(__name__)

DRIVER = "local"
# Docker's rule for volume names.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def validate_name(name: str) -> None:
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidArgument(
            f"invalid volume name {name!r}: use at least two characters from [a-zA-Z0-9_.-], "
            "starting with a letter or digit, without '..'")


class VolumeService:
    def __init__(self, store: Store, root: str):
        self.store = store
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)
        self._lock = asyncio.Lock()

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def mountpoint(self, name: str) -> str:
        return os.path.join(self._dir(name), "_data")

    def _volume(self, record: VolumeRecord) -> Volume:
        return Volume(name=record.name, driver=record.driver,
                      mountpoint=self.mountpoint(record.name), labels=record.labels,
                      created_at=record.created_at)

    async def create(self, name: str, labels: dict[str, str]) -> Volume:
        name = name or secrets.token_hex(32)
        validate_name(name)
        async with self._lock:
            existing = self.store.get(name)
            if existing is not None:
                return self._volume(existing)
            os.makedirs(self._dir(name), mode=0o700, exist_ok=True)
            os.makedirs(self.mountpoint(name), mode=0o755, exist_ok=True)
            record = VolumeRecord(name=name, driver=DRIVER, labels=dict(labels),
                                  created_at=datetime.now(timezone.utc).isoformat())
            self.store.add(record)
        log.info("volume_created", name=name)
        return self._volume(record)

    def get(self, name: str) -> Volume:
        record = self.store.get(name) if name else None
        if record is None:
            raise NotFound(f"volume {name} not found")
        return self._volume(record)

    def list(self) -> list[Volume]:
        return [self._volume(r) for r in self.store.list()]

    async def remove(self, name: str) -> None:
        async with self._lock:
            if not name or not self.store.remove(name):
                raise NotFound(f"volume {name} not found")
            # The row was the commit point; data left by a crash here is an
            # orphan that reconcile removes.
            await asyncio.to_thread(shutil.rmtree, self._dir(name), ignore_errors=True)
        log.info("volume_removed", name=name)

    def reconcile(self) -> None:
        """Remove data directories that no volume owns (a crash mid-create or mid-remove)."""
        known = {r.name for r in self.store.list()}
        for name in os.listdir(self.root):
            if name not in known:
                shutil.rmtree(self._dir(name), ignore_errors=True)
                log.warning("volume_data_removed", name=name, reason="no volume owns it")
        for name in known:
            if not os.path.isdir(self.mountpoint(name)):
                os.makedirs(self.mountpoint(name), mode=0o755, exist_ok=True)
                os.chmod(self._dir(name), 0o700)
                log.warning("volume_data_recreated", name=name, reason="its directory was missing")
