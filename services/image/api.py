"""The gRPC face of the image service: decode, call ImageService, encode."""

from __future__ import annotations


from berth.image.v1 import image_pb2, image_pb2_grpc
from berth.types.v1 import file_change_pb2
from google.protobuf import empty_pb2

from services.common import bulk
from services.common.config import Config
from services.common.errors import InvalidArgument
from services.image import convert, registries
from services.image.service import ImageService


# load's tarball chunks arrive as the serialized messages they are (services.common.bulk).
bulk.serve_bulk("/berth.image.v1.ImageService/LoadImages", request_field=1)


class ImageServicer(image_pb2_grpc.ImageServiceServicer):
    def __init__(self, service: ImageService):
        self.service = service

    async def LoadImages(self, request_iterator, context):
        async def chunks():
            async for request in request_iterator:
                yield request.data if isinstance(request, bulk.Raw) else request.chunk
        images, names = await self.service.load(chunks())
        return image_pb2.LoadImagesResponse(images=[convert.image_to_pb(i) for i in images],
                                            loaded_names=[image_pb2.LoadedNames(names=n) for n in names])

    async def ImportImage(self, request_iterator, context):
        iterator = request_iterator.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            raise InvalidArgument("import: no header received") from None
        if first.WhichOneof("part") != "header":
            raise InvalidArgument("import: the first message must be the header")
        header = first.header

        async def chunks():
            async for request in iterator:
                if request.WhichOneof("part") != "chunk":
                    raise InvalidArgument("import: only one header is allowed")
                yield request.chunk
        image = await self.service.import_image(
            chunks(), name=header.reference, config=convert.config_from_pb(header.config),
            message=header.message)
        return image_pb2.ImportImageResponse(image=convert.image_to_pb(image))

    async def SaveImages(self, request, context):
        async for chunk in self.service.save(list(request.references)):
            yield image_pb2.SaveImagesResponse(chunk=chunk)

    async def TagImage(self, request, context):
        return image_pb2.TagImageResponse(
            image=convert.image_to_pb(await self.service.tag(request.source, request.target)))

    async def ListImages(self, request, context):
        images = await self.service.list_images(request.reference, request.all)
        return image_pb2.ListImagesResponse(images=[convert.image_to_pb(i) for i in images])

    async def GetImage(self, request, context):
        return image_pb2.GetImageResponse(
            image=convert.image_to_pb(await self.service.get_image(request.reference)))

    async def RemoveImage(self, request, context):
        result = await self.service.remove_image(request.reference, request.force)
        return image_pb2.RemoveImageResponse(untagged=result.untagged, deleted=result.deleted)

    async def PrepareSnapshot(self, request, context):
        prepared = await self.service.prepare_snapshot(
            request.key, request.image, dict(request.labels))
        return convert.prepared_to_pb(prepared)

    async def GetSnapshotMounts(self, request, context):
        return convert.prepared_to_pb(await self.service.snapshot_mounts(request.key),
                                      image_pb2.GetSnapshotMountsResponse)

    async def RemoveSnapshot(self, request, context):
        await self.service.remove_snapshot(request.key)
        return empty_pb2.Empty()

    async def ListSnapshots(self, request, context):
        snapshots = await self.service.list_snapshots()
        return image_pb2.ListSnapshotsResponse(
            snapshots=[convert.snapshot_to_pb(s) for s in snapshots])

    async def CommitSnapshot(self, request, context):
        image = await self.service.commit(
            request.key, convert.config_from_pb(request.config), name=request.reference,
            comment=request.comment, author=request.author, created_by=request.created_by,
            uid_map=[(m.container_id, m.host_id, m.size) for m in request.uid_mappings],
            gid_map=[(m.container_id, m.host_id, m.size) for m in request.gid_mappings],
            remove=request.remove)
        return image_pb2.CommitSnapshotResponse(image=convert.image_to_pb(image))

    async def CreateImage(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("create image: the first message must be the header")
        header = first.header

        async def chunks():
            async for request in request_iterator:
                if request.WhichOneof("part") != "chunk":
                    raise InvalidArgument("create image: only one header is allowed")
                yield request.chunk
        image = await self.service.create_image(
            header.parent, convert.config_from_pb(header.config), chunks(),
            created_by=header.created_by, name=header.reference)
        return image_pb2.CreateImageResponse(image=convert.image_to_pb(image))

    async def DiffSnapshot(self, request, context):
        changes = await self.service.diff(request.key)
        return image_pb2.DiffSnapshotResponse(
            changes=[file_change_pb2.FileChange(kind=c.kind, path=c.path) for c in changes])

    async def GetDiskUsage(self, request, context):
        usage = await self.service.disk_usage()
        return image_pb2.GetDiskUsageResponse(
            images=[image_pb2.ImageUsage(id=u.id, size=u.size, shared_size=u.shared_size,
                                         snapshots=u.snapshots) for u in usage.images],
            snapshots=[image_pb2.SnapshotUsage(key=k, size=n) for k, n in usage.snapshots],
            images_size=usage.images_size, images_reclaimable=usage.images_reclaimable)

    async def PruneImages(self, request, context):
        result = await self.service.prune_images(request.all)
        return image_pb2.PruneImagesResponse(untagged=result.untagged, deleted=result.deleted,
                                             space_reclaimed=result.space_reclaimed)


    async def ExportImagePath(self, request, context):
        async for chunk in self.service.export_path(request.image, request.path):
            yield image_pb2.ExportImagePathResponse(chunk=chunk)


    async def PullImage(self, request, context):
        async for p in self.service.pull(request.reference, request.platform, convert.auth_from_pb(request.auth)):
            yield image_pb2.PullImageResponse(progress=convert.progress_to_pb(p))

    async def PushImage(self, request, context):
        async for p in self.service.push(request.reference, convert.auth_from_pb(request.auth)):
            yield image_pb2.PushImageResponse(progress=convert.progress_to_pb(p))

    async def CheckRegistryAuth(self, request, context):
        status = await self.service.login(request.server, convert.auth_from_pb(request.auth))
        return image_pb2.CheckRegistryAuthResponse(status=status)


def register(service: ImageService):
    def add(server):
        image_pb2_grpc.add_ImageServiceServicer_to_server(ImageServicer(service), server)
        return [image_pb2.DESCRIPTOR.services_by_name["ImageService"].full_name]
    return add


async def build(config: Config):
    service = ImageService(config.state_dir("image"),
                           registries=registries.load(config.registries_file))
    return register(service), service.close
