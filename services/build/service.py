"""BuildService: a build from options and a context stream to a stream of events.

A build goes: the context is spooled to a file and unpacked into a directory
of its own (under the service's run root, removed when the build ends), the
Dockerfile read, .dockerignore applied, the Dockerfile parsed, and the Build
run; its events are passed on as they come. The cache index is the only state
kept; the images are the image service's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime

import structlog
from google.protobuf import timestamp_pb2

from berth.image.v1 import image_pb2
from berth.types.v1 import build_pb2
from berth_docker import reference
from services.build import context as context_mod
from services.build import dockerfile as df
from services.build.builder import Build
from services.build.store import CacheStore
from services.build.worker import Worker
from services.common import errors

log = structlog.get_logger(__name__)
_DONE = object()


class BuildService:
    def __init__(self, worker: Worker, cache: CacheStore, state_dir: str, run_dir: str):
        self.worker = worker
        self.cache = cache
        self.cache_mounts = os.path.join(state_dir, "cache-mounts")
        self.contexts = os.path.join(run_dir, "contexts")
        os.makedirs(self.cache_mounts, mode=0o700, exist_ok=True)
        shutil.rmtree(self.contexts, ignore_errors=True)
        os.makedirs(self.contexts, mode=0o700)
        self._removals: set[asyncio.Task] = set()

    async def build(self, options: build_pb2.BuildOptions,
                    chunks: AsyncIterable[bytes]) -> AsyncIterator[build_pb2.BuildEvent]:
        _check_options(options)
        started = time.monotonic()
        work = tempfile.mkdtemp(dir=self.contexts)
        try:
            root = os.path.join(work, "context")
            os.mkdir(root, 0o755)
            archive = os.path.join(work, "context.tar")
            total = 0
            with open(archive, "wb") as f:
                async for chunk in chunks:
                    f.write(chunk)
                    total += len(chunk)
            received, text = await asyncio.to_thread(_unpack, archive, total, root, options)
            parsed = df.parse(text)
            queue: asyncio.Queue = asyncio.Queue()
            build = Build(self.worker, self.cache, options, root, parsed, queue.put_nowait,
                          self.cache_mounts)
            task = asyncio.create_task(build.run())
            task.add_done_callback(lambda _: queue.put_nowait(_DONE))
            try:
                while (event := await queue.get()) is not _DONE:
                    yield event
                result = task.result()
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            result.context_time.FromNanoseconds(int((received - started) * 1e9))
            result.engine_time.FromNanoseconds(int((time.monotonic() - received) * 1e9))
            log.info("image_built", image_id=result.image_id, tags=list(result.tags),
                     cached=result.cached_steps, run=result.run_steps,
                     context_ms=round(result.context_time.ToMilliseconds()),
                     engine_ms=round(result.engine_time.ToMilliseconds()))
            yield build_pb2.BuildEvent(result=result)
        finally:
            self.worker.replenish()
            # Removed after the reply has ended: the client need not wait for it (what a
            # killed service left is removed when the next one starts).
            task = asyncio.create_task(asyncio.to_thread(shutil.rmtree, work, True))
            self._removals.add(task)
            task.add_done_callback(self._removals.discard)

    async def list_cache(self) -> list[build_pb2.BuildCacheEntry]:
        entries = self.cache.all()
        images = {i.id: i for i in (await self.worker.image.ListImages(
            image_pb2.ListImagesRequest(all=True))).images}
        named = _named_chain(images, self.cache.parents())
        out = []
        for e in entries:
            if e.image_id not in images:
                continue
            out.append(_entry_pb(e, images, e.image_id in named))
        return out

    async def prune(self, all_: bool) -> tuple[list[str], int]:
        """Forget entries (those no named image needs, or all) and remove their images
        when nothing else names them; returns keys forgotten and bytes freed."""
        images = {i.id: i for i in (await self.worker.image.ListImages(
            image_pb2.ListImagesRequest(all=True))).images}
        named = _named_chain(images, self.cache.parents())
        before = await self._images_size()
        forget = [e for e in self.cache.all() if all_ or e.image_id not in named or e.image_id not in images]
        for e in forget:
            image = images.get(e.image_id)
            if image is not None and not image.repo_tags:
                try:
                    await self.worker.image.RemoveImage(image_pb2.RemoveImageRequest(reference=e.image_id))
                except errors.BerthError as exc:
                    # In use by a container, or already gone: the entry goes all the same.
                    log.info("build_cache_image_kept", image_id=e.image_id, reason=exc.message)
        self.cache.delete([e.key for e in forget])
        return [e.key for e in forget], max(0, before - await self._images_size())

    async def _images_size(self) -> int:
        usage = await self.worker.image.GetDiskUsage(image_pb2.GetDiskUsageRequest())
        return usage.images_size


def _unpack(archive: str, total: int, root: str, options: build_pb2.BuildOptions) -> tuple[float, bytes]:
    """The context unpacked into `root`, with .dockerignore applied (in one thread hop, not
    three): when it was received (unpacked) and the Dockerfile's text."""
    if total:
        context_mod.extract(archive, root)
    os.unlink(archive)
    received = time.monotonic()
    text = options.dockerfile_content or context_mod.read_dockerfile(root, options.dockerfile)
    context_mod.apply_dockerignore(root)
    return received, text


def _named_chain(images: dict, parents: dict[str, str]) -> set[str]:
    """Cached images a named image was built through (their steps are its history)."""
    out: set[str] = set()
    for image in images.values():
        if not image.repo_tags:
            continue
        cur = image.id
        while cur and cur not in out:
            out.add(cur)
            cur = parents.get(cur, "")
    return out


def _entry_pb(e, images, in_use: bool) -> build_pb2.BuildCacheEntry:
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(datetime.fromisoformat(e.created))
    out = build_pb2.BuildCacheEntry(key=e.key, image_id=e.image_id, description=e.description,
                                    created=created, usage_count=e.usage_count, in_use=in_use)
    if e.last_used:
        out.last_used.FromDatetime(datetime.fromisoformat(e.last_used))
    image, parent = images.get(e.image_id), images.get(e.parent_id)
    if image is not None:
        out.size = max(0, image.size - (parent.size if parent is not None else 0))
    return out


def _check_options(options: build_pb2.BuildOptions) -> None:
    if options.platform and options.platform not in ("linux", "linux/amd64", "linux/x86_64"):
        os_, _, _ = options.platform.partition("/")
        if os_ != "linux":
            raise errors.InvalidArgument(f"invalid platform {options.platform!r}: unknown operating system "
                                         "or architecture: berth builds linux images")
    for tag in options.tags:
        try:
            reference.parse(tag)
        except ValueError as exc:
            raise errors.InvalidArgument(f"invalid tag {tag!r}: {exc}") from None
