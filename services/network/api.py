"""The NetworkService gRPC servicer: decode, call the service, encode."""

from __future__ import annotations

import asyncio
import os

import grpc
from google.protobuf import empty_pb2

from berth.network.v1 import network_pb2 as pb
from berth.network.v1 import network_pb2_grpc as pb_grpc
from services.common.config import Config
from services.network import convert
from services.network.dns import Resolver, parse_upstreams
from services.network import bridge as kernel
from services.network.firewall import Nft, NftFirewaller
from services.network.forward import HostForward
from services.network import vxlan
from services.network.cluster import ClusterStore, Node, capacity
from services.network.netns import Namespaces
from services.network.overlay import OverlayDriver
from services.network.service import NetworkService
from services.network.store import NetworkStore, now


class NetworkServicer(pb_grpc.NetworkServiceServicer):
    def __init__(self, service: NetworkService):
        self.service = service

    def _network(self, network) -> pb.Network:
        return convert.network_to_pb(network, self.service.network_endpoints(network))

    async def CreateNetwork(self, request, context):
        return pb.CreateNetworkResponse(network=self._network(await self.service.create_network(
            request.name, request.driver, request.subnet, request.gateway, request.ip_range,
            request.internal, dict(request.labels), pools=convert.pools_from_pb(request.pools),
            enable_ipv6=request.enable_ipv6, options=dict(request.options),
            attachable=request.attachable)))

    async def RemoveNetwork(self, request, context):
        await self.service.remove_network(request.name)
        return empty_pb2.Empty()

    async def PruneNetworks(self, request, context):
        return pb.PruneNetworksResponse(removed=await self.service.prune_networks())

    async def ListNetworks(self, request, context):
        return pb.ListNetworksResponse(
            networks=[self._network(n) for n in self.service.list_networks()])

    async def GetNetwork(self, request, context):
        return pb.GetNetworkResponse(network=self._network(self.service.get_network(request.name)))

    async def CreateEndpoint(self, request, context):
        return pb.CreateEndpointResponse(endpoint=convert.endpoint_to_pb(await self.service.attach(
            request.container_id, request.network, name=request.name, hostname=request.hostname,
            ipv4_address=request.ipv4_address, aliases=tuple(request.aliases),
            ports=convert.ports_from_pb(request.ports),
            settings=convert.settings_from_pb(request.settings),
            publish_at_start=request.publish_at_start, plumb_later=request.plumb_later)))

    async def AwaitEndpoint(self, request, context):
        await self.service.await_endpoint(request.container_id)
        return empty_pb2.Empty()

    async def ConnectNetwork(self, request, context):
        return pb.ConnectNetworkResponse(endpoint=convert.endpoint_to_pb(await self.service.connect(
            request.container_id, request.network, request.ipv4_address, tuple(request.aliases),
            convert.settings_from_pb(request.settings))))

    async def DisconnectNetwork(self, request, context):
        await self.service.disconnect(request.container_id, request.network)
        return empty_pb2.Empty()

    async def DeleteEndpoint(self, request, context):
        await self.service.detach(request.container_id)
        return empty_pb2.Empty()

    async def ListNodes(self, request, context):
        return pb.ListNodesResponse(nodes=[convert.node_to_pb(n) for n in await self.service.list_nodes()],
                                    self=self.service.overlay.node)

    async def ListEndpoints(self, request, context):
        return pb.ListEndpointsResponse(
            endpoints=[convert.endpoint_to_pb(e) for e in self.service.list_endpoints()])

    async def PublishPorts(self, request, context):
        return pb.PublishPortsResponse(
            ports=convert.ports_to_pb(await self.service.publish_ports(request.container_id)))

    async def UnpublishPorts(self, request, context):
        await self.service.unpublish_ports(request.container_id)
        return empty_pb2.Empty()

    async def RemoveLink(self, request, context):
        await self.service.remove_link(request.container_id, request.alias)
        return empty_pb2.Empty()


async def build(config: Config):
    store = NetworkStore(os.path.join(config.state_dir("network"), "network.db"))
    overlay = await _join_cluster(config) if config.cluster_store else None
    nft = Nft()
    service = NetworkService(
        store, Namespaces(os.path.join(config.run_root, "netns")), firewall=NftFirewaller(nft),
        resolver=Resolver(parse_upstreams(config.dns_upstreams), in_netns=kernel.in_netns,
                          apply_nat=nft.run_once),
        files_dir=os.path.join(config.run_root, "network", "files"),
        bridge_name=config.bridge_name, bridge_subnet=config.bridge_subnet,
        nft_table=config.nft_table, host_forward=HostForward(config.nft_table, nft), overlay=overlay)
    await service.start()

    def register(server: grpc.aio.Server):
        pb_grpc.add_NetworkServiceServicer_to_server(NetworkServicer(service), server)
        return [pb.DESCRIPTOR.services_by_name["NetworkService"].full_name]

    async def close():
        service.close()
        store.close()
        if overlay is not None:
            await overlay.cluster.close()

    return register, close


async def _join_cluster(config: Config) -> OverlayDriver:
    """This node's session with the cluster store, registered under its lease."""
    cpus, memory = capacity()
    node = Node(name=config.node_name, address=config.cluster_advertise, cpus=cpus, memory=memory,
                started=now())
    cluster = ClusterStore(config.cluster_store, node, config.cluster_ttl)
    await cluster.connect()
    mtu = await asyncio.to_thread(vxlan.underlay_mtu, config.cluster_advertise)
    return OverlayDriver(cluster, config.cluster_advertise, mtu)
