"""The VolumeService gRPC servicer: decode, call the service, encode."""

from __future__ import annotations

import os

import grpc
from google.protobuf import empty_pb2

from berth.volume.v1 import volume_pb2 as pb
from berth.volume.v1 import volume_pb2_grpc as pb_grpc
from services.common.config import Config
from services.common.errors import InvalidArgument
from services.volume import convert
from services.volume.service import VolumeService
from services.volume.store import VolumeStore


class VolumeServicer(pb_grpc.VolumeServiceServicer):
    def __init__(self, service: VolumeService):
        self.service = service

    async def CreateVolume(self, request, context):
        return pb.CreateVolumeResponse(volume=convert.volume_to_pb(await self.service.create(
            request.name, dict(request.labels), request.driver, dict(request.options))))

    async def GetVolume(self, request, context):
        return pb.GetVolumeResponse(
            volume=convert.volume_to_pb(self.service.get(request.name, request.with_size)))

    async def ListVolumes(self, request, context):
        volumes = self.service.list(dict(request.labels), request.ref, request.dangling)
        return pb.ListVolumesResponse(volumes=[convert.volume_to_pb(v) for v in volumes])

    async def RemoveVolume(self, request, context):
        await self.service.remove(request.name)
        return empty_pb2.Empty()

    async def PruneVolumes(self, request, context):
        deleted, reclaimed = await self.service.prune(request.all, dict(request.labels))
        return pb.PruneVolumesResponse(deleted=deleted, space_reclaimed=reclaimed)

    async def AcquireVolume(self, request, context):
        return pb.AcquireVolumeResponse(
            volume=convert.volume_to_pb(await self.service.acquire(request.name, request.ref)))

    async def ReleaseVolumes(self, request, context):
        released = await self.service.release(request.ref, list(request.names))
        return pb.ReleaseVolumesResponse(volumes=[convert.volume_to_pb(v) for v in released])

    async def PopulateVolume(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument("populate must start with a header")

        async def chunks():
            async for part in request_iterator:
                if part.HasField("header"):
                    raise InvalidArgument("populate takes one header, first")
                yield part.chunk
        return pb.PopulateVolumeResponse(populated=await self.service.populate(first.header.name, chunks()))


async def build(config: Config):
    state = config.state_dir("volume")
    store = VolumeStore(os.path.join(state, "volume.db"))
    service = VolumeService(store, os.path.join(state, "volumes"))
    service.reconcile()

    def register(server: grpc.aio.Server):
        pb_grpc.add_VolumeServiceServicer_to_server(VolumeServicer(service), server)
        return [pb.DESCRIPTOR.services_by_name["VolumeService"].full_name]

    return register, store.close
