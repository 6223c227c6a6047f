"""The BuildService gRPC servicer: decode, call the service, encode."""

from __future__ import annotations

import os

import grpc

from berth.build.v1 import build_pb2 as pb
from berth.build.v1 import build_pb2_grpc as pb_grpc
from berth.container.v1 import container_pb2_grpc
from berth.image.v1 import image_pb2_grpc
from berth.network.v1 import network_pb2_grpc
from services.build.service import BuildService
from services.build.store import CacheStore
from services.build.worker import Worker
from services.common import rpc
from services.common.config import Config
from services.common.errors import InvalidArgument


class BuildServicer(pb_grpc.BuildServiceServicer):
    def __init__(self, service: BuildService):
        self.service = service

    async def Build(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "options":
            raise InvalidArgument("build: the first message must carry the options")

        async def chunks():
            async for part in request_iterator:
                if part.WhichOneof("part") != "chunk":
                    raise InvalidArgument("build: options come once, first")
                yield part.chunk
        async for event in self.service.build(first.options, chunks()):
            yield pb.BuildResponse(event=event)

    async def ListBuildCache(self, request, context):
        return pb.ListBuildCacheResponse(entries=await self.service.list_cache())

    async def PruneBuildCache(self, request, context):
        deleted, reclaimed = await self.service.prune(request.all)
        return pb.PruneBuildCacheResponse(deleted=deleted, space_reclaimed=reclaimed)


async def build(config: Config):
    clients = [
        image := rpc.connect(config, "image", image_pb2_grpc.ImageServiceStub),
        container := rpc.connect(config, "container", container_pb2_grpc.ContainerServiceStub),
        network := rpc.connect(config, "network", network_pb2_grpc.NetworkServiceStub),
    ]
    state = config.state_dir("build")
    run_dir = os.path.join(config.run_root, "build")
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    cache = CacheStore(os.path.join(state, "cache.db"))
    worker = Worker(image, container, network, run_dir)
    worker.start()
    service = BuildService(worker, cache, state, run_dir)

    def register(server: grpc.aio.Server):
        pb_grpc.add_BuildServiceServicer_to_server(BuildServicer(service), server)
        return [pb.DESCRIPTOR.services_by_name["BuildService"].full_name]

    async def on_stop():
        await worker.close()
        for client in clients:
            await client.channel.close()
        cache.close()

    return register, on_stop
