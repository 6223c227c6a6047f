"""Networks: the NetworkBackend over the network service.

Networks belong to the network service; this resolves container references to ids,
names a network in NotFound as docker does, and publishes the network events.
"""

from __future__ import annotations

from berth.engine.v1 import engine_pb2
from berth.network.v1 import network_pb2
from services.common import errors
from services.gateway.backends.interfaces import Publish, ResolveContainer


def network_info(n: network_pb2.Network) -> engine_pb2.NetworkInfo:
    return engine_pb2.NetworkInfo(
        id=n.id, name=n.name, driver=n.driver, labels=dict(n.labels), subnet=n.subnet,
        gateway=n.gateway, ip_range=n.ip_range, internal=n.internal, bridge=n.bridge,
        created=n.created, containers=list(n.containers))


class Networks:
    def __init__(self, network_client, publish: Publish, resolve_container: ResolveContainer):
        self._network = network_client
        self._publish = publish
        self._resolve = resolve_container

    def _event(self, action: str, actor_id: str, attributes: dict[str, str]) -> None:
        self._publish("network", action, actor_id, attributes)

    async def create(self, r: engine_pb2.CreateNetworkRequest) -> engine_pb2.NetworkInfo:
        n = await self._network.CreateNetwork(network_pb2.CreateNetworkRequest(
            name=r.name, driver=r.driver, subnet=r.subnet, gateway=r.gateway,
            ip_range=r.ip_range, internal=r.internal, labels=dict(r.labels)))
        self._event("create", n.id, {"name": n.name, "type": n.driver})
        return network_info(n)

    async def inspect(self, name: str) -> engine_pb2.NetworkInfo:
        return network_info(await self._get(name))

    async def list(self) -> list[engine_pb2.NetworkInfo]:
        response = await self._network.ListNetworks(network_pb2.ListNetworksRequest())
        return [network_info(n) for n in response.networks]

    async def _get(self, name: str) -> network_pb2.Network:
        try:
            return await self._network.GetNetwork(network_pb2.GetNetworkRequest(name=name))
        except errors.NotFound:
            raise errors.NotFound(f"network {name} not found") from None

    async def remove(self, name: str) -> None:
        n = await self._get(name)
        await self._network.RemoveNetwork(network_pb2.RemoveNetworkRequest(name=n.id))
        self._event("destroy", n.id, {"name": n.name, "type": n.driver})

    async def prune(self) -> list[str]:
        response = await self._network.PruneNetworks(network_pb2.PruneNetworksRequest())
        for name in response.removed:
            self._event("destroy", "", {"name": name, "type": "bridge"})
        return list(response.removed)

    async def connect(self, r: engine_pb2.ConnectNetworkRequest) -> None:
        cid = await self._resolve(r.container)
        n = await self._get(r.network)
        await self._network.Connect(network_pb2.ConnectRequest(
            container_id=cid, network=n.id, ipv4_address=r.ipv4_address, aliases=list(r.aliases)))
        self._event("connect", n.id, {"name": n.name, "type": n.driver, "container": cid})

    async def disconnect(self, r: engine_pb2.ConnectNetworkRequest) -> None:
        cid = await self._resolve(r.container)
        n = await self._get(r.network)
        await self._network.Disconnect(network_pb2.DisconnectRequest(container_id=cid, network=n.id))
        self._event("disconnect", n.id, {"name": n.name, "type": n.driver, "container": cid})
