"""Images and Registry: the ImageBackend and the RegistryBackend over the image service.

The image service stores, counts and talks to registries; Images adds what only the
gateway knows (how many containers use each image) and keeps the shared ImageConfigs
current; Registry relays a pull's or push's progress to the caller. Both publish the
engine's image events once the image service made the change (a pull or push only once
the transfer succeeded).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.types.v1 import registry_pb2
from services.common import bulk, errors
from berth_docker.reference import familiar
from berth_docker.shapes import images as shapes_images
from services.gateway import convert
from services.gateway.backends.image_configs import ImageConfigs
from services.gateway.backends.interfaces import ImageUsage, Publish


def _publish_image(publish: Publish, action: str, image_id: str, name: str) -> None:
    """Docker's image events name the image as its user wrote it (familiar form)."""
    publish("image", action, image_id, {"name": familiar(name)})


class Images:
    def __init__(self, image_client, publish: Publish, image_configs: ImageConfigs, image_usage: ImageUsage):
        self._image = image_client
        self._publish = publish
        self._configs = image_configs
        self._usage = image_usage

    async def load(self, chunks: AsyncIterator[bulk.Raw]) -> engine_pb2.LoadImagesResponse:
        # The chunks are serialized LoadImagesRequests (the engine's and the image service's
        # carry the bytes in the same field), relayed without protobuf.
        response = await bulk.bulk_stream_unary(
            self._image.channel, "/berth.image.v1.ImageService/LoadImages", image_pb2.LoadImagesResponse)(chunks)
        for image in response.images:
            _publish_image(self._publish, "load", image.id, image.repo_tags[0] if image.repo_tags else image.id)
        return engine_pb2.LoadImagesResponse(
            images=[convert.image_info(i) for i in response.images],
            loaded_names=[engine_pb2.LoadedNames(names=n.names) for n in response.loaded_names])

    async def import_(self, reference: str, changes: Sequence[str], message: str,
                      chunks: AsyncIterator[bytes]) -> engine_pb2.ImageInfo:
        config = convert.parse_changes(changes)

        async def requests():
            yield image_pb2.ImportImageRequest(header=image_pb2.ImportHeader(
                reference=reference, config=config, message=message))
            async for data in chunks:
                yield image_pb2.ImportImageRequest(chunk=data)
        image = (await self._image.ImportImage(requests())).image
        _publish_image(self._publish, "import", image.id, image.repo_tags[0] if image.repo_tags else image.id)
        return convert.image_info(image)

    async def save(self, references: Sequence[str]) -> AsyncIterator[bytes]:
        async for response in self._image.SaveImages(
                image_pb2.SaveImagesRequest(references=list(references))):
            yield response.chunk

    async def list(self, all_: bool, reference: str) -> list[engine_pb2.ImageInfo]:
        images, counts = await asyncio.gather(
            self._image.ListImages(image_pb2.ListImagesRequest(all=all_, reference=reference)),
            self._usage())
        infos = [convert.image_info(i, counts.get(i.id, 0)) for i in images.images]
        infos.sort(key=lambda i: (i.created.seconds, i.created.nanos), reverse=True)
        return infos

    async def inspect(self, reference: str) -> engine_pb2.ImageInfo:
        reply, counts = await asyncio.gather(
            self._image.GetImage(image_pb2.GetImageRequest(reference=reference)), self._usage())
        image = reply.image
        self._configs.remember(image)
        return convert.image_info(image, counts.get(image.id, 0))

    async def tag(self, source: str, target: str) -> None:
        image = (await self._image.TagImage(image_pb2.TagImageRequest(source=source, target=target))).image
        _publish_image(self._publish, "tag", image.id, target)

    async def remove(self, reference: str, force: bool) -> engine_pb2.RemoveImageResponse:
        response = await self._image.RemoveImage(image_pb2.RemoveImageRequest(reference=reference, force=force))
        self._removed(response.untagged, response.deleted)
        return engine_pb2.RemoveImageResponse(untagged=response.untagged, deleted=response.deleted)

    def _removed(self, untagged: Sequence[str], deleted: Sequence[str]) -> None:
        for name in untagged:
            _publish_image(self._publish, "untag", "", name)
        for image_id in deleted:
            self._configs.forget(image_id)
            _publish_image(self._publish, "delete", image_id, image_id)

    async def prune(self, all_: bool, until: float | None = None,
                    labels: Sequence[str] = (), not_labels: Sequence[str] = ()) -> engine_pb2.PruneSystemResponse:
        if until is not None or labels or not_labels:
            return await self._prune_matching(all_, until, labels, not_labels)
        # The image service's prune (reachability over blobs and layers) reports what it freed.
        response = await self._image.PruneImages(image_pb2.PruneImagesRequest(all=all_))
        self._removed(response.untagged, response.deleted)
        self._publish("image", "prune", "", {"reclaimed": str(response.space_reclaimed)})
        return engine_pb2.PruneSystemResponse(
            images_untagged=response.untagged, images_deleted=response.deleted,
            space_reclaimed=response.space_reclaimed)

    async def _prune_matching(self, all_: bool, until: float | None, labels: Sequence[str],
                              not_labels: Sequence[str]) -> engine_pb2.PruneSystemResponse:
        """Unused images created before `until`, with every label of `labels` and none of
        `not_labels` ("k" or "k=v"), removed one by one (images in use stay)."""
        out = engine_pb2.PruneSystemResponse()
        for info in await self.list(True, ""):
            if info.containers or (info.repo_tags and not all_):
                continue
            if until is not None and info.created.seconds >= until:
                continue
            have = shapes_images.image_labels(info)
            if not all(_has_label(have, f) for f in labels) or any(_has_label(have, f) for f in not_labels):
                continue
            try:
                response = await self.remove(info.id, force=bool(info.repo_tags))
            except (errors.Conflict, errors.FailedPrecondition, errors.NotFound):
                continue
            out.images_untagged.extend(response.untagged)
            out.images_deleted.extend(response.deleted)
        return out


def _has_label(labels: dict, wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    return key in labels and (not eq or labels[key] == value)


class Registry:
    def __init__(self, image_client, publish: Publish):
        self._image = image_client
        self._publish = publish

    async def pull(self, request: engine_pb2.PullImageRequest) -> AsyncIterator[registry_pb2.Progress]:
        image_id = ""
        # The node's progress messages are the Engine's (berth.types.v1.Progress): relayed as they are.
        async for reply in self._image.PullImage(image_pb2.PullImageRequest(
                reference=request.reference, platform=request.platform, auth=request.auth)):
            image_id = reply.progress.image_id or image_id
            yield reply.progress
        if image_id:
            _publish_image(self._publish, "pull", image_id, request.reference)

    async def push(self, request: engine_pb2.PushImageRequest) -> AsyncIterator[registry_pb2.Progress]:
        image_id = ""
        async for reply in self._image.PushImage(image_pb2.PushImageRequest(
                reference=request.reference, auth=request.auth)):
            image_id = reply.progress.image_id or image_id
            yield reply.progress
        if image_id:
            _publish_image(self._publish, "push", image_id, request.reference)

    async def login(
            self, request: engine_pb2.CheckRegistryAuthRequest) -> engine_pb2.CheckRegistryAuthResponse:
        response = await self._image.CheckRegistryAuth(image_pb2.CheckRegistryAuthRequest(
            server=request.server, auth=request.auth))
        return engine_pb2.CheckRegistryAuthResponse(status=response.status)
