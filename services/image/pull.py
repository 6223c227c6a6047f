"""Pulling an image from a registry into the content store, the image store and the snapshotter.

The order makes crashes harmless:

1. The manifest is resolved (an index narrowed to the wanted platform).
2. A lease file naming every blob of the image is written, so garbage
   collection, even at the next start, keeps blobs a pull already completed.
3. Blobs are downloaded in parallel into partial/<digest>, verified for size
   and digest while streaming, and renamed into the store only when they match;
   a partial file left by a crash or a broken connection is resumed with Range.
4. Layers are unpacked in order as soon as they and their parents are present
   (the diff_id is checked in that same pass), while later layers download.
5. The image record and its tag are committed in one transaction; the lease goes.

A blob already in the store is never fetched again ("Already exists").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog

from berth_docker import reference
from services.common import tracing
from services.common.errors import (
    BerthError, DeadlineExceeded, InvalidArgument, NotFound, Unavailable,
)
from services.image import model
from services.image.distribution import Credentials, Repository
from services.image.model import ImageRecord, Layer, Progress
from services.image.registries import RegistriesConfig

log = structlog.get_logger(__name__)
tracer = tracing.tracer(__name__)

LAYER_TYPES = (model.MEDIA_LAYER, model.MEDIA_LAYER_GZIP, model.MEDIA_LAYER + "+zstd",
               model.DOCKER_LAYER, model.DOCKER_LAYER_GZIP)
CONFIG_TYPES = (model.MEDIA_CONFIG, "application/vnd.docker.container.image.v1+json")
MAX_CONFIG = 8 * 1024 * 1024
LEASE_MAX_AGE = 24 * 3600
# Progress lines for one layer at most this often: the CLI redraws, nobody reads them all.
PROGRESS_INTERVAL = 0.1


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        if not text:
            return cls()
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(f"invalid platform {text!r}: want os/arch[/variant], e.g. linux/amd64")
        return cls(*parts) if len(parts) == 3 else cls(parts[0], parts[1])

    def matches(self, p: dict) -> bool:
        return (p.get("os") == self.os and p.get("architecture") == self.architecture
                and (not self.variant or p.get("variant", "") == self.variant))

    def __str__(self) -> str:
        return "/".join(x for x in (self.os, self.architecture, self.variant) if x)


def _json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    return doc


def _descriptor(desc, what: str) -> tuple[str, int, str]:
    if not isinstance(desc, dict):
        raise InvalidArgument(f"{what}: malformed descriptor")
    digest, size, media_type = desc.get("digest"), desc.get("size"), desc.get("mediaType", "")
    if not isinstance(digest, str) or len(digest) != 71 or not digest.startswith("sha256:"):
        raise InvalidArgument(f"{what}: descriptor without a sha256 digest")
    if not isinstance(size, int) or size < 0:
        raise InvalidArgument(f"{what}: descriptor {digest} has no valid size")
    return digest, size, media_type if isinstance(media_type, str) else ""


def choose_platform(index: dict, platform: Platform, where: str) -> str:
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidArgument(f"{where}: image index has no manifests list")
    for desc in manifests:
        if isinstance(desc, dict) and isinstance(desc.get("platform"), dict) \
                and platform.matches(desc["platform"]):
            return _descriptor(desc, where)[0]
    raise NotFound(f"no matching manifest for {platform} in the manifest list entries of {where}")


def _lease_name(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:32] + ".json"


class Leases:
    """Blobs a pull in progress (or interrupted by a crash) keeps from garbage collection."""

    def __init__(self, state_dir: str):
        self.dir = os.path.join(state_dir, "leases")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def add(self, name: str, digests: list[str]) -> str:
        path = os.path.join(self.dir, _lease_name(name))
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"name": name, "digests": digests}, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        return path

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def digests(self) -> set[str]:
        out: set[str] = set()
        now = time.time()
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            try:
                if now - os.stat(path).st_mtime > LEASE_MAX_AGE or name.endswith(".tmp"):
                    os.unlink(path)
                    continue
                with open(path) as f:
                    out.update(json.load(f).get("digests") or [])
            except (OSError, ValueError):
                continue
        return out


class Puller:
    """One pull: resolve, download, unpack, commit. `svc` is the ImageService."""

    def __init__(self, svc, config: RegistriesConfig, creds: Credentials, platform: Platform,
                 emit: Callable[[Progress], None]):
        self.svc = svc
        self.config = config
        self.creds = creds
        self.platform = platform
        self.emit = emit

    async def run(self, text: str) -> None:
        ref = reference.parse(text)
        shown = ref.digest or ref.tag
        self.emit(Progress(f"{shown}: Pulling from {ref.path}"))
        last_error: BerthError | None = None
        for endpoint in self.config.endpoints(ref.domain):
            try:
                async with Repository(endpoint, ref.path, self.creds, self.config) as repo:
                    await self._pull(repo, ref)
                return
            except (Unavailable, DeadlineExceeded, NotFound) as exc:
                last_error = exc
                if not endpoint.mirror:
                    raise
                log.warning("mirror_failed", mirror=endpoint.url, error=str(exc))
        assert last_error is not None
        raise last_error

    async def _pull(self, repo: Repository, ref: reference.Reference) -> None:
        data, media_type, top_digest = await repo.get_manifest(ref.digest or ref.tag)
        doc = _json(data, f"manifest {top_digest}")
        media_type = doc.get("mediaType") or media_type
        if media_type in (model.MEDIA_INDEX, model.DOCKER_MANIFEST_LIST) or (
                "manifests" in doc and "layers" not in doc):
            child = choose_platform(doc, self.platform, ref.familiar)
            data, media_type, digest = await repo.get_manifest(child)
            doc = _json(data, f"manifest {digest}")
            media_type = doc.get("mediaType") or media_type
        else:
            digest = top_digest
        if media_type not in (model.MEDIA_MANIFEST, model.DOCKER_MANIFEST):
            raise InvalidArgument(f"manifest {digest} has unsupported media type {media_type!r}")
        config_digest, config_size, config_type = _descriptor(doc.get("config"), f"manifest {digest}")
        if config_type and config_type not in CONFIG_TYPES:
            raise InvalidArgument(f"manifest {digest}: unsupported config media type {config_type!r}")
        if config_size > MAX_CONFIG:
            raise InvalidArgument(f"manifest {digest}: image config of {config_size} bytes is too large")
        layer_descs = doc.get("layers")
        if not isinstance(layer_descs, list):
            raise InvalidArgument(f"manifest {digest} has no layers list")
        layers = [_descriptor(d, f"manifest {digest}") for d in layer_descs]
        for layer_digest, _size, layer_type in layers:
            if layer_type not in LAYER_TYPES:
                raise InvalidArgument(f"layer {layer_digest} has unsupported media type {layer_type!r}")

        name = str(ref) if not ref.digest else ref.name
        content = self.svc.content
        lease = self.svc.leases.add(name, [digest, config_digest, *(d for d, _, _ in layers)])
        self.svc.hold_blobs(True, [config_digest, *(d for d, _, _ in layers)])
        try:
            await self._fetch(repo, config_digest, config_size, None)
            config_bytes = content.read(config_digest)
            config = _json(config_bytes, f"image config {config_digest}")
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") if isinstance(config.get("rootfs"), dict) else None
            if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
                raise InvalidArgument(
                    f"image config {config_digest} lists {len(diff_ids or [])} layers, the manifest {len(layers)}")
            records = tuple(Layer(diff_id=d, digest=ld, media_type=lt, size=ls)
                            for d, (ld, ls, lt) in zip(diff_ids, layers))
            await self._layers(repo, records)
            record = ImageRecord(id=config_digest, manifest_digest=digest, config_json=config_bytes,
                                 layers=records, stored_at=datetime.now(timezone.utc))
            known = self.svc.store.get_image(config_digest) is not None
            previous = self.svc.store.image_for_tag(name) if not ref.digest else None
            await asyncio.to_thread(self.svc.commit_pulled, record, data, digest,
                                    [] if ref.digest else [name])
        finally:
            self.svc.hold_blobs(False, [config_digest, *(d for d, _, _ in layers)])
        self.svc.leases.remove(lease)
        self.emit(Progress(f"Digest: {top_digest}"))
        newer = not (known and previous == config_digest)
        self.emit(Progress(
            f"Status: {'Downloaded newer image' if newer else 'Image is up to date'} for {ref.familiar}",
            image_id=config_digest, digest=top_digest))
        log.info("image_pulled", name=name, image_id=config_digest, digest=top_digest)

    async def _fetch(self, repo: Repository, digest: str, size: int, layer_id: str | None) -> bool:
        """Download one blob into the store unless it is there; returns whether it was fetched."""
        content = self.svc.content
        if content.exists(digest):
            return False
        partial = content.partial_path(digest)
        state = {"done": 0, "shown": 0.0}

        def on_bytes(n: int) -> None:
            state["done"] += n
            now = time.monotonic()
            if layer_id and (now - state["shown"] >= PROGRESS_INTERVAL or state["done"] >= size):
                state["shown"] = now
                self.emit(Progress("Downloading", layer_id, state["done"], size))

        # One download per blob, even when two pulls share it; then the slots cap parallelism.
        async with self.svc.fetch_lock(digest), self.svc.download_slots:
            if content.exists(digest):
                return False
            with tracer.start_as_current_span("pull_blob") as span:
                span.set_attribute("digest", digest)
                await repo.fetch_blob(digest, size, partial, on_bytes)
        if layer_id:
            self.emit(Progress("Verifying Checksum", layer_id))
        await asyncio.to_thread(content.commit_partial, digest)
        return True

    async def _layers(self, repo: Repository, layers: tuple[Layer, ...]) -> None:
        content = self.svc.content
        present = [content.exists(layer.digest) for layer in layers]
        for layer, here in zip(layers, present):
            self.emit(Progress("Already exists" if here else "Pulling fs layer", short(layer.digest)))
        for layer, here in zip(layers, present):
            if not here:
                self.emit(Progress("Waiting", short(layer.digest)))

        async def download(layer: Layer) -> None:
            if await self._fetch(repo, layer.digest, layer.size, short(layer.digest)):
                self.emit(Progress("Download complete", short(layer.digest)))

        tasks = [asyncio.create_task(download(layer)) for layer in layers]
        try:
            # Unpack in order, each layer as soon as it (and so its parents) is here.
            for i, (layer, task) in enumerate(zip(layers, tasks)):
                await task
                if not present[i]:
                    self.emit(Progress("Extracting", short(layer.digest), layer.size, layer.size))
                await self.svc.unpack_layers(layers[:i + 1])
                if not present[i]:
                    self.emit(Progress("Pull complete", short(layer.digest)))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


async def stream(work: Callable[[Callable[[Progress], None]], object]) -> AsyncIterator[Progress]:
    """Run `work(emit)` and yield what it emits as it happens; its error ends the stream."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def runner():
        try:
            await work(queue.put_nowait)
        finally:
            queue.put_nowait(done)

    task = asyncio.create_task(runner())
    try:
        while (item := await queue.get()) is not done:
            yield item
        await task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
