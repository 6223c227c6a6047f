"""The NetworkService gRPC servicer: decode, call the service, encode."""

from __future__ import annotations

import os

import grpc
from google.protobuf import empty_pb2

from berth.network.v1 import network_pb2 as pb
from berth.network.v1 import network_pb2_grpc as pb_grpc
from services.common.config import Config
from services.network import convert
from services.network.netns import Namespaces
from services.network.service import NetworkService
from services.network.store import NetworkStore


class NetworkServicer(pb_grpc.NetworkServiceServicer):
    def __init__(self, service: NetworkService):
        self.service = service

    async def ListNetworks(self, request, context):
        return pb.ListNetworksResponse(
            networks=[convert.network_to_pb(n) for n in self.service.list_networks()])

    async def GetNetwork(self, request, context):
        return convert.network_to_pb(self.service.get_network(request.name))

    async def Attach(self, request, context):
        return convert.endpoint_to_pb(
            await self.service.attach(request.container_id, request.network))

    async def Detach(self, request, context):
        await self.service.detach(request.container_id)
        return empty_pb2.Empty()

    async def ListEndpoints(self, request, context):
        return pb.ListEndpointsResponse(
            endpoints=[convert.endpoint_to_pb(e) for e in self.service.list_endpoints()])


async def build(config: Config):
    store = NetworkStore(os.path.join(config.state_dir("network"), "network.db"))
    service = NetworkService(store, Namespaces(os.path.join(config.run_root, "netns")))
    service.reconcile()

    def register(server: grpc.aio.Server):
        pb_grpc.add_NetworkServiceServicer_to_server(NetworkServicer(service), server)
        return [pb.DESCRIPTOR.services_by_name["NetworkService"].full_name]

    return register, store.close
