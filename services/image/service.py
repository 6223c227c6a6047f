"""ImageService: the rules of the image service, over the content store, sqlite and the snapshotter.

Callers pass plain values and get model types back; protobuf stays in api.py.
Blocking work (tar, hashing, unpacking, fsync) runs in threads so the server
keeps answering while a large image loads.

Every layer is unpacked before its image is recorded (load, import and pull
alike): an image either unpacks whole or is refused, at the door, with the
entry that could not be unpacked named.

Garbage: a blob is kept while an image names it; an unpacked layer while an
image or a snapshot needs it, or while a PrepareSnapshot in flight holds a
lease on it. Everything else is removed after each deletion and at start.
"""

from __future__ import annotations

import asyncio
import os
import tarfile
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import BinaryIO

import structlog

from berth_docker import reference
from berth_docker.tarstream import ForwardReader
from services.common import bulk
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.image import archive, export
from services.image import commit as commit_mod
from services.image.usage import DiskUsage, PruneResult, Usage
from services.image.content import CHUNK, ContentStore
from services.image.distribution import Credentials, Repository
from services.image.model import Progress
from services.image.pull import LEASE_MAX_AGE, Leases, Platform, Puller, stream
from services.image.push import Pusher
from services.image.registries import RegistriesConfig
from services.image.model import (
    MEDIA_LAYER, Image, ImageConfig, ImageRecord, Layer, PreparedSnapshot, Snapshot, SnapshotRecord,
)
from services.image.snapshotter import Snapshotter, chain_ids, check_key
from services.image.store import ImageStore, Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RemoveResult:
    untagged: tuple[str, ...]   # full names, e.g. "docker.io/library/busybox:latest"
    deleted: tuple[str, ...]    # image ids


@dataclass(frozen=True)
class _Resolved:
    image_id: str
    # The full name the reference resolved through; None when given by id or digest.
    name: str | None
    display: str


class ImageService:
    """Images, names and snapshots of one node, kept under `state_dir`."""

    def __init__(self, state_dir: str, store: Store | None = None,
                 registries: RegistriesConfig | None = None):
        self.state_dir = state_dir
        self.registries = registries or RegistriesConfig()
        # Parallelism of blob transfers, over all pulls and pushes of this node.
        self.download_slots = asyncio.Semaphore(self.registries.max_concurrent_downloads)
        self.upload_slots = asyncio.Semaphore(self.registries.max_concurrent_uploads)
        self.leases = Leases(state_dir)
        # Blobs of transfers in flight, kept from garbage collection.
        self._held: Counter[str] = Counter()
        self._fetch_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.tmp_dir = os.path.join(state_dir, "tmp")
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        for name in os.listdir(self.tmp_dir):
            os.unlink(os.path.join(self.tmp_dir, name))
        self.content = ContentStore(state_dir)
        self.store: Store = store or ImageStore(os.path.join(state_dir, "images.db"))
        self.snapshotter = Snapshotter(state_dir, self.content.open)
        self.usage = Usage(self.content.size, self.snapshotter.layer_dir)
        # Held by whatever writes, reads for saving, or deletes blobs.
        self._content_lock = threading.Lock()
        # Guards the leases and the decision to delete unpacked layers.
        self._lease_lock = threading.Lock()
        self._leases: Counter[str] = Counter()
        self.content.prune_partials(LEASE_MAX_AGE)
        self._reconcile()

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close:
            close()

    # -- names ------------------------------------------------------------------

    def _resolve(self, text: str) -> _Resolved:
        if not text:
            raise InvalidArgument("image reference must not be empty")
        if text.startswith("sha256:"):
            if not reference.looks_like_id(text):
                raise InvalidArgument(f"invalid image id {text!r}: want sha256:<64 hex>")
            if self.store.get_image(text) is None:
                raise NotFound(f"No such image: {text}", resource="image")
            return _Resolved(text, None, text)
        if len(text) == 64 and reference.looks_like_id(text):
            if self.store.get_image("sha256:" + text) is None:
                raise NotFound(f"No such image: {text}", resource="image")
            return _Resolved("sha256:" + text, None, text)
        display = text
        parse_error: InvalidArgument | None = None
        try:
            ref = reference.parse(text)
        except InvalidArgument as exc:
            ref, parse_error = None, exc
        if ref is not None:
            display = reference.familiar(str(ref))
            if ref.digest:
                for image_id in self.store.image_ids_with_manifest(ref.digest):
                    return _Resolved(image_id, None, display)
            else:
                image_id = self.store.image_for_tag(str(ref))
                if image_id:
                    return _Resolved(image_id, str(ref), display)
        if reference.looks_like_id(text):
            ids = self.store.image_ids_with_prefix(text)
            if len(ids) == 1:
                return _Resolved(ids[0], None, text)
            if len(ids) > 1:
                raise InvalidArgument(
                    f"short id {text!r} is ambiguous: it matches {len(ids)} images; use more characters")
        if parse_error is not None:
            raise parse_error
        raise NotFound(f"No such image: {display}", resource="image")

    def _image(self, image_id: str) -> Image:
        record = self.store.get_image(image_id)
        if record is None:
            raise NotFound(f"No such image: {image_id}", resource="image")
        if record.parent and not self.store.image_ids_with_prefix(record.parent.removeprefix("sha256:")):
            record = replace(record, parent="")  # removed since (pruned): no dangling Parent
        return Image.from_record(record, self.store.tags_of(image_id))

    async def get_image(self, text: str) -> Image:
        return self._image(self._resolve(text).image_id)

    async def list_images(self, pattern: str = "", all: bool = False) -> list[Image]:
        tags = self.store.all_tags()
        out = []
        records = self.store.list_images()
        ids = {r.id for r in records}
        for record in records:
            if record.parent and record.parent not in ids:
                record = replace(record, parent="")
            names = tags.get(record.id, [])
            if pattern:
                if not any(reference.matches(pattern, n) for n in names):
                    continue
            elif not names and not all:
                continue
            out.append(Image.from_record(record, names))
        return out

    async def tag(self, source: str, target: str) -> Image:
        resolved = self._resolve(source)
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        self.store.set_tag(str(ref), resolved.image_id)
        log.info("image_tagged", image_id=resolved.image_id, name=str(ref))
        return self._image(resolved.image_id)

    async def remove_image(self, text: str, force: bool = False) -> RemoveResult:
        resolved = self._resolve(text)
        result = await asyncio.to_thread(self._remove_image, resolved, force)
        log.info("image_removed", image_id=resolved.image_id, untagged=list(result.untagged),
                 deleted=list(result.deleted))
        return result

    def _remove_image(self, resolved: _Resolved, force: bool) -> RemoveResult:
        image_id = resolved.image_id
        with self._content_lock:
            tags = self.store.tags_of(image_id)
            if resolved.name and len(tags) > 1:
                self.store.remove_tag(resolved.name)
                return RemoveResult((resolved.name,), ())
            if not resolved.name and len(tags) > 1 and not force:
                raise FailedPrecondition(
                    f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                    f"image is referenced in multiple repositories")
            snapshots = self.store.snapshots_of(image_id)
            if snapshots and not force:
                raise FailedPrecondition(
                    f"unable to remove image {resolved.display}: image is in use by "
                    f"container {snapshots[0].key[:12]}")
            untagged = self.store.delete_image(image_id)
            self._gc_locked()
        return RemoveResult(tuple(untagged), (image_id,))

    # -- load, import, save -----------------------------------------------------

    @contextmanager
    def _spool(self):
        f = tempfile.NamedTemporaryFile(dir=self.tmp_dir, prefix="spool-", delete=True)
        try:
            yield f
        finally:
            f.close()

    async def _spool_chunks(self, f: BinaryIO, chunks: AsyncIterable[bytes]) -> int:
        total = 0
        async for chunk in chunks:
            f.write(chunk)
            total += len(chunk)
        f.flush()
        return total

    async def load(self, chunks: AsyncIterable[bytes]) -> list[Image]:
        chunks = aiter(chunks)
        head: list[bytes] = []
        while sum(len(c) for c in head) < 512 and (chunk := await anext(chunks, None)) is not None:
            head.append(chunk)
        if not any(head):
            raise InvalidArgument("load: the tarball is empty")

        async def everything():
            for chunk in head:
                yield chunk
            async for chunk in chunks:
                yield chunk
        if archive.is_plain_tar(b"".join(head)[:512]):
            # Read as it arrives: the layers go to the content store on the way, not
            # through a spooled copy of the tarball first.
            loaded = await bulk.in_thread(everything(), self._load_streamed)
        else:  # compressed: tarfile finds out how, reading a spooled file
            with self._spool() as f:
                await self._spool_chunks(f, everything())
                loaded = await asyncio.to_thread(self._load, f.name)
        images = [self._image(img.record.id) for img in loaded]
        log.info("images_loaded", ids=[i.id for i in images],
                 names=[t for i in images for t in i.repo_tags])
        return images, [list(img.tags) for img in loaded]

    def _load(self, path: str) -> list[archive.LoadedImage]:
        with self._content_lock:
            return self._load_locked(lambda: archive.read_archive(path, self.content))

    def _load_streamed(self, pieces) -> list[archive.LoadedImage]:
        # The bytes arrive (into ingest files, no blobs yet) without the lock held.
        streamed = archive.StreamedArchive(ForwardReader(pieces), self.content)
        try:
            with self._content_lock:
                return self._load_locked(lambda: archive.read_images(streamed, self.content))
        finally:
            streamed.close()

    def _load_locked(self, read) -> list[archive.LoadedImage]:
        try:
            loaded = read()
            for img in loaded:
                self.snapshotter.unpack(img.record.layers)
            self.store.put_images([(img.record, img.tags) for img in loaded])
            return loaded
        except BaseException:
            # Blobs written before the failure are referenced by nothing.
            self._gc_locked()
            raise

    async def import_image(self, chunks: AsyncIterable[bytes], name: str = "",
                           config: ImageConfig | None = None, message: str = "") -> Image:
        target = str(reference.parse(name)) if name else ""
        if target and reference.parse(target).digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {name}")
        with self._spool() as f:
            total = await self._spool_chunks(f, chunks)
            if total == 0:
                raise InvalidArgument("import: the root filesystem tarball is empty")
            record = await asyncio.to_thread(self._import, f.name, config or ImageConfig(),
                                             message, target)
        log.info("image_imported", image_id=record.id, name=target)
        return self._image(record.id)

    def _import(self, path: str, config: ImageConfig, message: str, target: str) -> ImageRecord:
        with self._content_lock:
            try:
                record = archive.import_rootfs(path, self.content, config, message)
                self.snapshotter.unpack(record.layers)
                self.store.put_images([(record, [target] if target else [])])
                return record
            except BaseException:
                self._gc_locked()
                raise

    async def save(self, references: list[str]) -> AsyncIterator[bytes]:
        """The tarball of the named images, in chunks."""
        if not references:
            raise InvalidArgument("save: no image references given")
        wanted: dict[str, list[str]] = {}
        for text in references:
            resolved = self._resolve(text)
            names = wanted.setdefault(resolved.image_id, [])
            if resolved.name and resolved.name not in names:
                names.append(resolved.name)
        f = tempfile.TemporaryFile(dir=self.tmp_dir)
        try:
            await asyncio.to_thread(self._write_save, f, wanted)
            f.seek(0)
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk
        finally:
            f.close()

    def _write_save(self, f: BinaryIO, wanted: dict[str, list[str]]) -> None:
        with self._content_lock:
            images = []
            for image_id, names in wanted.items():
                record = self.store.get_image(image_id)
                if record is None:
                    raise NotFound(f"No such image: {image_id}", resource="image")
                images.append((record, names))
            archive.write_archive(f, images, self.content)

    # -- registries -----------------------------------------------------------------

    def pull(self, name: str, platform: str = "", creds: Credentials | None = None) -> AsyncIterator[Progress]:
        """Pull from a registry; yields progress, the last message names the image."""
        puller = None

        async def work(emit):
            nonlocal puller
            puller = Puller(self, self.registries, creds or Credentials(), Platform.parse(platform), emit)
            await puller.run(name)
        return stream(work)

    def push(self, name: str, creds: Credentials | None = None) -> AsyncIterator[Progress]:
        async def work(emit):
            await Pusher(self, self.registries, creds or Credentials(), emit).run(name)
        return stream(work)

    async def login(self, server: str, creds: Credentials) -> str:
        """Check credentials against a registry ("Login Succeeded" when they work)."""
        domain = server or reference.DEFAULT_DOMAIN
        for prefix in ("https://", "http://"):
            domain = domain.removeprefix(prefix)
        domain = domain.split("/")[0]
        if domain in ("index.docker.io", "registry-1.docker.io"):
            domain = reference.DEFAULT_DOMAIN
        endpoint = self.registries.endpoints(domain, for_push=True)[0]
        async with Repository(endpoint, "", creds, self.registries) as repo:
            await repo.ping()
        log.info("registry_login", registry=domain, username=creds.username)
        return "Login Succeeded"

    def fetch_lock(self, digest: str) -> asyncio.Lock:
        lock = self._fetch_locks.get(digest)
        if lock is None:
            lock = self._fetch_locks[digest] = asyncio.Lock()
        return lock

    def hold_blobs(self, hold: bool, digests: list[str]) -> None:
        with self._lease_lock:
            if hold:
                self._held.update(digests)
            else:
                self._held.subtract(digests)
                self._held += Counter()

    async def unpack_layers(self, layers) -> None:
        chains = chain_ids([layer.diff_id for layer in layers])
        with self._lease(chains):
            if not all(self.snapshotter.is_unpacked(c) for c in chains):
                await asyncio.to_thread(self.snapshotter.unpack, layers)

    def commit_pulled(self, record: ImageRecord, manifest: bytes, manifest_digest: str,
                      names: list[str]) -> None:
        with self._content_lock:
            self.content.write_bytes(manifest, manifest_digest)
            self.store.put_images([(record, names)])

    # -- snapshots ------------------------------------------------------------------

    @contextmanager
    def _lease(self, chains: list[str]):
        with self._lease_lock:
            self._leases.update(chains)
        try:
            yield
        finally:
            with self._lease_lock:
                self._leases.subtract(chains)
                self._leases += Counter()  # drops the zeros

    async def prepare_snapshot(self, key: str, image: str,
                               labels: dict[str, str] | None = None) -> PreparedSnapshot:
        check_key(key)
        # The gateway passes full ids: one read, no name resolution, on this hot path.
        record = self.store.get_image(image) if image.startswith("sha256:") else None
        if record is None:
            record = self.store.get_image(self._resolve(image).image_id)
        if record is None:
            raise NotFound(f"No such image: {image}", resource="image")
        image_id = record.id
        chains = chain_ids(record.diff_ids)
        with self._lease(chains):
            if not all(self.snapshotter.is_unpacked(c) for c in chains):
                await asyncio.to_thread(self.snapshotter.unpack, record.layers)
            snap = SnapshotRecord(key=key, image_id=image_id, labels=dict(labels or {}),
                                  created=datetime.now(timezone.utc), chain_ids=tuple(chains))
            self.store.add_snapshot(snap)
            try:
                self._create_dirs(key)
            except BaseException:
                self.store.delete_snapshot(key)
                raise
        log.info("snapshot_prepared", key=key, image_id=image_id)
        return PreparedSnapshot(self.snapshotter.mounts(key, chains), image_id)

    def _create_dirs(self, key: str) -> None:
        try:
            self.snapshotter.create(key)
        except FileExistsError:
            # Left by a removal that raced with this prepare: its record is gone.
            self.snapshotter.remove(key)
            self.snapshotter.create(key)

    async def snapshot_mounts(self, key: str) -> PreparedSnapshot:
        check_key(key)
        snap = self.store.get_snapshot(key)
        if snap is None:
            raise NotFound(f"snapshot {key} not found")
        return PreparedSnapshot(self.snapshotter.mounts(key, snap.chain_ids), snap.image_id)

    async def remove_snapshot(self, key: str) -> None:
        check_key(key)
        snap = self.store.get_snapshot(key)
        self.store.delete_snapshot(key)
        await asyncio.to_thread(self.snapshotter.remove, key)
        if snap is not None:
            log.info("snapshot_removed", key=key)
            if self.store.get_image(snap.image_id) is None:
                # The image was removed by force: its layers can go now.
                await asyncio.to_thread(self.gc)

    async def export_path(self, image: str, path: str) -> AsyncIterator[bytes]:
        """The directory at `path` in an image as a tar stream (copy-up into volumes)."""
        record = self.store.get_image(self._resolve(image).image_id)
        if record is None:
            raise NotFound(f"No such image: {image}", resource="image")
        chains = chain_ids(record.diff_ids)
        # The lease keeps a concurrent rmi from deleting the layers being read.
        with self._lease(chains):
            if not all(self.snapshotter.is_unpacked(c) for c in chains):
                await asyncio.to_thread(self.snapshotter.unpack, record.layers)
            layers = [self.snapshotter.layer_fs(c) for c in reversed(chains)]
            async for chunk in export.export_path(layers, path, os.path.join(self.state_dir, "export")):
                yield chunk

    async def list_snapshots(self) -> list[Snapshot]:
        records = self.store.list_snapshots()
        sizes = await asyncio.to_thread(lambda: [self._usage(r.key) for r in records])
        return [Snapshot(r.key, r.image_id, r.labels, r.created, size)
                for r, size in zip(records, sizes)]

    def _usage(self, key: str) -> int:
        try:
            return self.snapshotter.usage(key)
        except OSError:
            return 0

    # -- commit, diff, disk usage ---------------------------------------------------

    async def commit(self, key: str, config: ImageConfig, name: str = "", comment: str = "",
                     author: str = "", created_by: str = "", uid_map: commit_mod.IdRanges = (),
                     gid_map: commit_mod.IdRanges = (), remove: bool = False) -> Image:
        """A new image: the snapshot's image plus its writable layer as one more layer.
        With `remove`, the snapshot is removed once the image is stored (the caller is done
        with it: one call less than RemoveSnapshot after)."""
        check_key(key)
        target = str(reference.parse(name)) if name else ""
        if target and reference.parse(target).digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {name}")
        snap = self.store.get_snapshot(key)
        if snap is None:
            raise NotFound(f"snapshot {key} not found")
        record = await asyncio.to_thread(self._commit, snap, config, comment, author, target,
                                         created_by, uid_map, gid_map)
        log.info("snapshot_committed", key=key, image_id=record.id, name=target)
        if remove:
            try:
                await self.remove_snapshot(key)
            except OSError as exc:
                # The image is stored: what is left of the snapshot is garbage, not a failure.
                log.warning("snapshot_remove_failed", key=key, error=str(exc))
        return self._image(record.id)

    def _commit(self, snap: SnapshotRecord, config: ImageConfig, comment: str, author: str,
                target: str, created_by: str, uid_map: commit_mod.IdRanges,
                gid_map: commit_mod.IdRanges) -> ImageRecord:
        parent = self.store.get_image(snap.image_id)
        if parent is None:
            raise FailedPrecondition(
                f"the image {snap.image_id} of this container was removed: it cannot be committed")
        upper = os.path.join(self.snapshotter.snapshot_dir(snap.key), "upper")
        with tempfile.TemporaryFile(dir=self.tmp_dir) as f:
            # Tarred outside the lock: a big layer must not hold up pulls and loads.
            commit_mod.write_layer(upper, f, uid_map, gid_map)
            f.seek(0)
            return self._store_child(parent, config, f, target, comment, author, created_by)

    def _store_child(self, parent: ImageRecord | None, config: ImageConfig, layer: BinaryIO | None,
                     target: str, comment: str = "", author: str = "",
                     created_by: str = "") -> ImageRecord:
        """A new image record: the parent's layers, plus `layer` (an uncompressed tar) if
        given, with `config`; stored and named `target`."""
        with self._content_lock:
            try:
                layers = parent.layers if parent else ()
                diff_id = None
                if layer is not None:
                    diff_id, size = self.content.write_file(layer)
                    layers = (*layers, Layer(diff_id=diff_id, digest=diff_id, size=size,
                                             media_type=MEDIA_LAYER))
                config_bytes = commit_mod.config_document(
                    parent.config_json if parent else None, config.to_oci(), diff_id, comment,
                    author, created_by)
                config_digest, config_size = self.content.write_bytes(config_bytes)
                manifest_digest, _ = self.content.write_bytes(
                    archive._oci_manifest(config_digest, config_size, list(layers)))
                record = ImageRecord(id=config_digest, manifest_digest=manifest_digest,
                                     config_json=config_bytes, layers=layers,
                                     stored_at=datetime.now(timezone.utc),
                                     parent=parent.id if parent else "")
                self.store.put_images([(record, [target] if target else [])])
                return record
            except BaseException:
                self._gc_locked()
                raise

    async def create_image(self, parent: str, config: ImageConfig, chunks: AsyncIterable[bytes],
                           created_by: str = "", name: str = "") -> Image:
        """A child of `parent` (none: an image of no layers) with a new config and, when
        chunks come, the tar they make as one more layer."""
        target = str(reference.parse(name)) if name else ""
        if target and reference.parse(target).digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {name}")
        record = None
        if parent:
            record = self.store.get_image(self._resolve(parent).image_id)
            if record is None:
                raise NotFound(f"No such image: {parent}", resource="image")
        with self._spool() as f:
            total = await self._spool_chunks(f, chunks)
            layer = None
            if total:
                f.seek(0)
                await asyncio.to_thread(_check_tar, f)
                f.seek(0)
                layer = f
            new = await asyncio.to_thread(self._store_child, record, config, layer, target,
                                          created_by=created_by)
        log.info("image_created", image_id=new.id, parent=parent, name=target)
        return self._image(new.id)

    async def diff(self, key: str) -> list[commit_mod.Change]:
        check_key(key)
        snap = self.store.get_snapshot(key)
        if snap is None:
            raise NotFound(f"snapshot {key} not found")
        upper = os.path.join(self.snapshotter.snapshot_dir(key), "upper")
        # Stored lowest first; overlayfs (and the diff) look from the top down.
        lowers = [self.snapshotter.layer_fs(c) for c in reversed(snap.chain_ids)]
        return await asyncio.to_thread(commit_mod.diff, upper, lowers)

    async def disk_usage(self) -> DiskUsage:
        return await asyncio.to_thread(self._disk_usage)

    def _disk_usage(self) -> DiskUsage:
        records, snaps = self.store.list_images(), self.store.list_snapshots()
        images = self.usage.images(records, snaps)
        unused = {u.id for u in images if not u.snapshots}
        return DiskUsage(images=images, snapshots=[(s.key, self._usage(s.key)) for s in snaps],
                         images_size=self.usage.total(records),
                         images_reclaimable=self.usage.freed(records, snaps, unused))

    async def prune_images(self, all: bool) -> PruneResult:
        result = await asyncio.to_thread(self._prune_images, all)
        log.info("images_pruned", deleted=result.deleted, space_reclaimed=result.space_reclaimed)
        return result

    def _prune_images(self, all: bool) -> PruneResult:
        with self._content_lock:
            records, snaps = self.store.list_images(), self.store.list_snapshots()
            tags = self.store.all_tags()
            used = {s.image_id for s in snaps}
            removed = {r.id for r in records if r.id not in used and (all or not tags.get(r.id))}
            # Measured before anything goes, the same way DiskUsage measures reclaimable.
            freed = self.usage.freed(records, snaps, removed)
            untagged: list[str] = []
            for image_id in sorted(removed):
                untagged.extend(self.store.delete_image(image_id))
            self._gc_locked()
            self.usage.forget_layers(self.snapshotter.unpacked_layers())
        return PruneResult(untagged=untagged, deleted=sorted(removed), space_reclaimed=freed)

    # -- garbage ------------------------------------------------------------------

    def gc(self) -> None:
        with self._content_lock:
            self._gc_locked()

    def _gc_locked(self) -> None:
        records = self.store.list_images()
        blobs = set(self._held) | self.leases.digests()
        for r in records:
            blobs.update((r.id, r.manifest_digest, *(layer.digest for layer in r.layers)))
        removed_blobs = 0
        for digest in self.content.list():
            if digest not in blobs:
                self.content.delete(digest)
                removed_blobs += 1
        removed_layers = 0
        with self._lease_lock:
            keep = set(self._leases)
            for r in records:
                keep.update(chain_ids(r.diff_ids))
            for snap in self.store.list_snapshots():
                keep.update(snap.chain_ids)
            for chain in self.snapshotter.unpacked_layers() - keep:
                self.snapshotter.remove_layer(chain)
                removed_layers += 1
        if removed_blobs or removed_layers:
            log.info("garbage_collected", blobs=removed_blobs, layers=removed_layers)

    def _reconcile(self) -> None:
        """Make the disk agree with the database after a crash or restart."""
        known = {s.key for s in self.store.list_snapshots()}
        for key in self.snapshotter.snapshot_keys_on_disk() - known:
            self.snapshotter.remove(key)
        for key in known:
            if not os.path.isdir(self.snapshotter.snapshot_dir(key)):
                log.warning("snapshot_dirs_recreated", key=key)
                self.snapshotter.create(key)
        self.gc()


def _check_tar(f: BinaryIO) -> None:
    try:
        with tarfile.open(fileobj=f, mode="r|") as tar:
            for _ in tar:
                pass
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArgument(f"create image: the layer is not a valid tar archive: {exc}") from None
