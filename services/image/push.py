"""Pushing an image from the content store to a registry.

Each blob goes the cheapest way the registry allows: nothing when a HEAD
finds it ("Layer already exists"), a cross-repository mount when another
repository on the same registry holds it ("Mounted from ..."), else a chunked
upload (POST, PATCH with Content-Range, PUT ?digest). The manifest goes last,
so the registry never names an image whose blobs it does not have.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import structlog

from berth_docker import reference
from services.common.errors import InvalidArgument
from services.image import model
from services.image.distribution import Credentials, Repository
from services.image.model import Progress
from services.image.pull import PROGRESS_INTERVAL, short
from services.image.registries import RegistriesConfig

log = structlog.get_logger(__name__)


class Pusher:
    def __init__(self, svc, config: RegistriesConfig, creds: Credentials, emit: Callable[[Progress], None]):
        self.svc = svc
        self.config = config
        self.creds = creds
        self.emit = emit

    async def run(self, text: str) -> None:
        ref = reference.parse(text)
        if ref.digest:
            raise InvalidArgument(f"cannot push a digest reference: {text}")
        resolved = self.svc._resolve(str(ref))
        record = self.svc.store.get_image(resolved.image_id)
        self.emit(Progress(f"The push refers to repository [{reference.familiar(ref.name)}]"))
        sources = sorted({r.path for r in (reference.parse(t) for t in self.svc.store.tags_of(record.id))
                          if r.domain == ref.domain and r.path != ref.path})
        manifest = self.svc.content.read(record.manifest_digest)
        try:
            media_type = json.loads(manifest).get("mediaType") or model.MEDIA_MANIFEST
        except ValueError:
            raise InvalidArgument(f"stored manifest {record.manifest_digest} is not valid JSON") from None
        endpoint = self.config.endpoints(ref.domain, for_push=True)[0]
        async with Repository(endpoint, ref.path, self.creds, self.config, push=True) as repo:
            for layer in reversed(record.layers):
                self.emit(Progress("Preparing", short(layer.digest)))
            blobs = [(layer.digest, layer.size, True) for layer in reversed(record.layers)]
            blobs.append((record.id, self.svc.content.size(record.id), False))
            await asyncio.gather(*(self._blob(repo, d, s, shown, sources) for d, s, shown in blobs))
            digest = await repo.put_manifest(ref.tag, manifest, media_type) or record.manifest_digest
        self.emit(Progress(f"{ref.tag}: digest: {digest} size: {len(manifest)}",
                           image_id=record.id, digest=digest))
        log.info("image_pushed", name=str(ref), digest=digest)

    async def _blob(self, repo: Repository, digest: str, size: int, shown: bool, sources: list[str]) -> None:
        layer_id = short(digest)

        def say(status: str, current: int = 0, total: int = 0) -> None:
            if shown:
                self.emit(Progress(status, layer_id, current, total))

        async with self.svc.upload_slots:
            if await repo.blob_exists(digest):
                say("Layer already exists")
                return
            location = None
            for source in sources:
                location = await repo.mount_blob(digest, source)
                if location is None:
                    say(f"Mounted from {source}")
                    return
            state = {"done": 0, "shown": 0.0}

            def on_bytes(n: int) -> None:
                state["done"] += n
                now = time.monotonic()
                if now - state["shown"] >= PROGRESS_INTERVAL or state["done"] >= size:
                    state["shown"] = now
                    say("Pushing", state["done"], size)

            await repo.upload_blob(digest, size, self.svc.content.path(digest), on_bytes, location)
            say("Pushed")
