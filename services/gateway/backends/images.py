"""Images: load, import, save, list, inspect, tag, remove, prune, and pull/push/login.

(gwres owns this module; this is the code moved out of the old Gateway object, so the
branch keeps working until gwres's version replaces it.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from services.common import errors
from services.common.reference import familiar
from services.gateway import convert, registry


class Images:
    """`image` is the image service client; `publish` the event log's; `image_configs` the
    shared ImageConfigs; `image_usage()` containers per image id (the containers backend)."""

    def __init__(self, image, publish, image_configs,
                 image_usage: Callable[[], Awaitable[dict[str, int]]]):
        self._image = image
        self._publish = publish
        self._image_configs = image_configs
        self._image_usage = image_usage

    def publish(self, action: str, image_id: str, name: str) -> None:
        self._publish("image", action, image_id, {"name": familiar(name)})

    async def load(self, chunks: AsyncIterator[bytes]) -> list[engine_pb2.ImageInfo]:
        async def requests():
            async for data in chunks:
                yield image_pb2.LoadRequest(chunk=data)
        response = await self._image.Load(requests())
        for image in response.images:
            self.publish("load", image.id, image.repo_tags[0] if image.repo_tags else image.id)
        return [convert.image_info(i) for i in response.images]

    async def import_(self, reference: str, changes: Sequence[str], message: str,
                      chunks: AsyncIterator[bytes]) -> engine_pb2.ImageInfo:
        config = convert.parse_changes(changes)

        async def requests():
            yield image_pb2.ImportRequest(header=image_pb2.ImportHeader(
                reference=reference, config=config, message=message))
            async for data in chunks:
                yield image_pb2.ImportRequest(chunk=data)
        image = await self._image.Import(requests())
        self.publish("import", image.id, image.repo_tags[0] if image.repo_tags else image.id)
        return convert.image_info(image)

    async def save(self, references: Sequence[str]) -> AsyncIterator[bytes]:
        async for response in self._image.Save(image_pb2.SaveRequest(references=list(references))):
            yield response.chunk

    async def list(self, all_: bool, reference: str) -> list[engine_pb2.ImageInfo]:
        images = await self._image.ListImages(image_pb2.ListImagesRequest(all=all_, reference=reference))
        counts = await self._image_usage()
        infos = [convert.image_info(i, counts.get(i.id, 0)) for i in images.images]
        infos.sort(key=lambda i: (i.created.seconds, i.created.nanos), reverse=True)
        return infos

    async def inspect(self, reference: str) -> engine_pb2.ImageInfo:
        image = await self._image.GetImage(image_pb2.GetImageRequest(reference=reference))
        self._image_configs.remember(image)
        return convert.image_info(image, (await self._image_usage()).get(image.id, 0))

    async def tag(self, source: str, target: str) -> None:
        image = await self._image.Tag(image_pb2.TagRequest(source=source, target=target))
        self.publish("tag", image.id, target)

    async def remove(self, reference: str, force: bool) -> engine_pb2.RemoveImageResponse:
        response = await self._image.RemoveImage(image_pb2.RemoveImageRequest(reference=reference, force=force))
        for name in response.untagged:
            self.publish("untag", "", name)
        for image_id in response.deleted:
            self._image_configs.forget(image_id)
            self.publish("delete", image_id, image_id)
        return engine_pb2.RemoveImageResponse(untagged=response.untagged, deleted=response.deleted)

    async def prune(self, all_: bool) -> engine_pb2.PruneResponse:
        response = await self._image.PruneImages(image_pb2.PruneImagesRequest(all=all_))
        for name in response.untagged:
            self.publish("untag", "", name)
        for image_id in response.deleted:
            self._image_configs.forget(image_id)
            self.publish("delete", image_id, image_id)
        self._publish("image", "prune", "", {"reclaimed": str(response.space_reclaimed)})
        return engine_pb2.PruneResponse(images_untagged=response.untagged, images_deleted=response.deleted,
                                        space_reclaimed=response.space_reclaimed)

    async def prune_filtered(self, all_: bool, filters: Mapping[str, Sequence[str]]) -> list[dict]:
        """Remove dangling images (all unused ones with `all_`); images in use stay."""
        unknown = sorted(set(filters) - {"dangling", "until"})
        if unknown:
            raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
        if filters.get("dangling"):
            all_ = all_ or not any(v.lower() in ("1", "true") for v in filters["dangling"])
        until = min((_seconds(u) for u in filters.get("until", ())), default=None)
        report = []
        for info in await self.list(True, ""):
            if info.containers or (info.repo_tags and not all_):
                continue
            if until is not None and info.created.seconds >= until:
                continue
            try:
                response = await self.remove(info.id, force=bool(info.repo_tags))
            except (errors.Conflict, errors.FailedPrecondition, errors.NotFound):
                continue
            report += [{"Untagged": u} for u in response.untagged]
            report += [{"Deleted": d} for d in response.deleted]
        return report


class Registry:
    """pull, push, login through the image service (services/gateway/registry.py)."""

    def __init__(self, image, publish):
        self._image = image
        self._publish = publish

    def _publish_image(self, action: str, image_id: str, name: str) -> None:
        self._publish("image", action, image_id, {"name": familiar(name)})

    def pull(self, request: engine_pb2.PullImageRequest):
        return registry.pull(self._image, self._publish_image, request)

    def push(self, request: engine_pb2.PushImageRequest):
        return registry.push(self._image, self._publish_image, request)

    async def login(self, request: engine_pb2.LoginRequest) -> engine_pb2.LoginResponse:
        return await registry.login(self._image, request)


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise errors.InvalidArgument(f"invalid until value: {value!r}") from None
