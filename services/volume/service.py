"""VolumeService: named volumes with the local driver.

A volume is a directory <state_dir>/volumes/<name>/_data that a container
mounts with a bind. volumes/ and volumes/<name> are root-only so that users
on the host cannot reach into a container's data; _data itself keeps 0755
(or the mode copy-up gave it) because it becomes the root of the mount the
container's users see.

Driver options follow docker's local driver: `type=tmpfs,o=size=64m` or
`type=none,o=bind,device=/srv/x` make a device-backed volume, whose device is
mounted on _data while the volume has references (AcquireVolume/ReleaseVolumes) and is
unmounted when the last one goes, so several containers share one instance.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterable, Mapping
from datetime import datetime, timezone

import structlog

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.volume import mounts
from services.volume.store import Store, Volume, VolumeRecord

log = structlog.get_logger(__name__)

DRIVER = "local"
# Docker marks the volumes it makes for `-v /path` and an image's VOLUME this way.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_OPTION_KEYS = ("type", "o", "device", "size")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def validate_name(name: str) -> None:
    """Docker's rule ([a-zA-Z0-9][a-zA-Z0-9_.-]+), and never '..': a name is a directory."""
    if (len(name) < 2 or not name[0].isascii() or not name[0].isalnum()
            or not set(name) <= _NAME_CHARS or ".." in name):
        raise InvalidArgument(
            f"invalid volume name {name!r}: use at least two characters from [a-zA-Z0-9_.-], "
            "starting with a letter or digit, without '..'")


def validate_options(options: Mapping[str, str]) -> dict[str, str]:
    """Docker's local driver options, checked at create so a bad one changes nothing."""
    for key in options:
        if key not in _OPTION_KEYS:
            raise InvalidArgument(f"invalid option key: {key!r}")
    opts = dict(options)
    kind = opts.get("type", "")
    if "size" in opts:
        if kind != "tmpfs":
            raise InvalidArgument("quota size requested but no quota support")
        opts["o"] = ",".join(filter(None, [opts.get("o", ""), f"size={opts.pop('size')}"]))
    if not opts:
        return opts
    if not kind:
        raise InvalidArgument("missing required option: \"type\"")
    if kind == "tmpfs":
        opts.setdefault("device", "tmpfs")
    elif "bind" in opts.get("o", "").split(","):
        device = opts.get("device", "")
        if not device.startswith("/"):
            raise InvalidArgument(f"invalid bind device {device!r}: it must be an absolute path")
        # Symlinks are resolved once, here, so the volume always names the same place.
        device = os.path.realpath(device)
        if not os.path.isdir(device):
            raise InvalidArgument(f"bind device {opts['device']} is not an existing directory")
        opts["device"] = device
    elif not opts.get("device"):
        raise InvalidArgument("missing required option: \"device\"")
    return opts


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

    def _volume(self, record: VolumeRecord, with_size: bool = False) -> Volume:
        return Volume(name=record.name, driver=record.driver,
                      mountpoint=self.mountpoint(record.name), labels=record.labels,
                      created_at=record.created_at, options=record.options, refs=record.refs,
                      size=_usage(self.mountpoint(record.name)) if with_size else -1)

    def _record(self, name: str) -> VolumeRecord:
        record = self.store.get(name) if name else None
        if record is None:
            raise NotFound(f"volume {name} not found")
        return record

    async def create(self, name: str, labels: Mapping[str, str], driver: str = "",
                     options: Mapping[str, str] | None = None) -> Volume:
        name = name or secrets.token_hex(32)
        validate_name(name)
        if driver not in ("", DRIVER):
            raise NotFound(f"plugin \"{driver}\" not found")
        opts = validate_options(options or {})
        async with self._lock:
            existing = self.store.get(name)
            if existing is not None:
                if options and existing.options != opts:
                    raise AlreadyExists(
                        f"volume {name} already exists with other options")
                return self._volume(existing)
            os.makedirs(self._dir(name), mode=0o700, exist_ok=True)
            os.makedirs(self.mountpoint(name), mode=0o755, exist_ok=True)
            record = VolumeRecord(name=name, driver=DRIVER, labels=dict(labels), options=opts,
                                  created_at=datetime.now(timezone.utc).isoformat())
            self.store.add(record)
        log.info("volume_created", name=name, type=opts.get("type", ""))
        return self._volume(record)

    def get(self, name: str, with_size: bool = False) -> Volume:
        return self._volume(self._record(name), with_size)

    def list(self, labels: Mapping[str, str] | None = None, ref: str = "",
             dangling: bool = False) -> list[Volume]:
        out = []
        for r in self.store.list():
            if labels and not _has_labels(r.labels, labels):
                continue
            if ref and ref not in r.refs:
                continue
            if dangling and r.refs:
                continue
            out.append(self._volume(r))
        return out

    async def remove(self, name: str) -> None:
        async with self._lock:
            record = self._record(name)
            if record.refs:
                raise FailedPrecondition(f"remove {name}: volume is in use - [{', '.join(record.refs)}]")
            await self._remove_locked(record)

    async def _remove_locked(self, record: VolumeRecord) -> None:
        # Unmount before the row goes: never rmtree through a mount (it would delete
        # a bind device's files).
        await asyncio.to_thread(mounts.unmount, self.mountpoint(record.name))
        self.store.remove(record.name)
        # The row was the commit point; data left by a crash here is an orphan
        # that reconcile removes.
        await asyncio.to_thread(shutil.rmtree, self._dir(record.name), ignore_errors=True)
        log.info("volume_removed", name=record.name)

    async def prune(self, all_: bool, labels: Mapping[str, str]) -> tuple[list[str], int]:
        deleted, reclaimed = [], 0
        async with self._lock:
            for record in self.store.list():
                if record.refs or (labels and not _has_labels(record.labels, labels)):
                    continue
                if not all_ and ANONYMOUS_LABEL not in record.labels:
                    continue
                if not record.options:
                    reclaimed += await asyncio.to_thread(_usage, self.mountpoint(record.name))
                await self._remove_locked(record)
                deleted.append(record.name)
        return deleted, reclaimed

    async def acquire(self, name: str, ref: str) -> Volume:
        if not ref:
            raise InvalidArgument("a reference is required")
        async with self._lock:
            record = self._record(name)
            self.store.add_ref(name, ref)
            try:
                await asyncio.to_thread(self._ensure_mounted, record)
            except OSError as exc:
                self.store.remove_refs(ref, [name])
                raise InvalidArgument(
                    f"error while mounting volume '{self.mountpoint(name)}': {exc.strerror}") from None
            return self._volume(self.store.get(name))

    async def release(self, ref: str, names: list[str]) -> list[Volume]:
        async with self._lock:
            released = self.store.remove_refs(ref, names)
            out = []
            for name in released:
                record = self.store.get(name)
                if record is None:
                    continue
                if not record.refs and record.options:
                    await asyncio.to_thread(mounts.unmount, self.mountpoint(name))
                out.append(self._volume(record))
        return out

    def _ensure_mounted(self, record: VolumeRecord) -> None:
        opts = record.options
        if not opts or mounts.is_mounted(self.mountpoint(record.name)):
            return
        kind = "" if opts["type"] == "none" else opts["type"]
        mounts.mount(opts.get("device", kind), self.mountpoint(record.name), kind, opts.get("o", ""))
        log.info("volume_mounted", name=record.name, type=opts["type"])

    async def populate(self, name: str, chunks: AsyncIterable[bytes]) -> bool:
        """Copy-up: extract a tar stream into the volume when its data is empty."""
        record = self._record(name)
        fd, spool = tempfile.mkstemp(prefix=".populate-", dir=self._dir(name))
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    await asyncio.to_thread(f.write, chunk)
            async with self._lock:
                data = self.mountpoint(record.name)
                if record.options and not mounts.is_mounted(data):
                    raise FailedPrecondition(f"volume {name} is not mounted: acquire it first")
                if os.listdir(data) or os.path.getsize(spool) == 0:
                    return False
                await asyncio.to_thread(_extract, spool, data)
        finally:
            os.unlink(spool)
        log.info("volume_populated", name=name)
        return True

    def reconcile(self) -> None:
        """After a crash: orphan data goes, missing directories come back, device mounts
        follow the references (mounted while held, unmounted when not)."""
        records = {r.name: r for r in self.store.list()}
        for name in os.listdir(self.root):
            if name not in records:
                mounts.unmount(self.mountpoint(name))
                shutil.rmtree(self._dir(name), ignore_errors=True)
                log.warning("volume_data_removed", name=name, reason="no volume owns it")
        for name, record in records.items():
            if not os.path.isdir(self.mountpoint(name)):
                os.makedirs(self.mountpoint(name), mode=0o755, exist_ok=True)
                os.chmod(self._dir(name), 0o700)
                log.warning("volume_data_recreated", name=name, reason="its directory was missing")
            for stale in os.listdir(self._dir(name)):
                if stale.startswith(".populate-"):
                    os.unlink(os.path.join(self._dir(name), stale))
            if not record.options:
                continue
            try:
                if record.refs:
                    self._ensure_mounted(record)
                else:
                    mounts.unmount(self.mountpoint(name))
            except OSError as exc:
                log.warning("volume_mount_reconcile_failed", name=name, error=str(exc))


def _has_labels(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(k in have and (not v or have[k] == v) for k, v in want.items())


def _keep_modes(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's "tar" filter refuses members outside `dest` (also through symlinks
    extracted earlier) but would clear setuid and group-write bits; copy-up keeps
    the image's modes, so only its verdict is used."""
    tarfile.tar_filter(member, dest)
    return member


def _extract(spool: str, dest: str) -> None:
    with tarfile.open(spool, "r:") as tar:
        tar.extractall(dest, numeric_owner=True, filter=_keep_modes)


def _usage(path: str) -> int:
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode) and st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total
