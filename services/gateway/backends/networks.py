"""Networks: the NetworkBackend over the network service.

Networks belong to the network service; this resolves container references to ids,
names a network in NotFound as docker does, and publishes the network events.
"""

from __future__ import annotations

from datetime import datetime

from berth.engine.v1 import engine_pb2
from berth.network.v1 import network_pb2
from berth_docker.query import label_matches
from services.common import errors
from services.gateway.backends.interfaces import Publish, ResolveContainer


def network_info(n: network_pb2.Network) -> engine_pb2.NetworkInfo:
    return engine_pb2.NetworkInfo(
        id=n.id, name=n.name, driver=n.driver, labels=dict(n.labels), subnet=n.subnet,
        gateway=n.gateway, ip_range=n.ip_range, internal=n.internal, bridge=n.bridge,
        created=n.created, containers=list(n.containers),
        pools=[engine_pb2.NetworkPool(subnet=p.subnet, gateway=p.gateway, ip_range=p.ip_range,
                                      aux_addresses=dict(p.aux_addresses)) for p in n.pools],
        enable_ipv6=n.enable_ipv6, options=dict(n.options), attachable=n.attachable, vni=n.vni, mtu=n.mtu,
        endpoints=[engine_pb2.NetworkContainer(
            container_id=e.container_id, name=e.name, endpoint_id=e.endpoint_id,
            mac_address=e.mac_address, ipv4_address=e.ipv4_address, ipv6_address=e.ipv6_address)
            for e in n.endpoints])


def endpoint_settings(s: engine_pb2.NetworkEndpointSettings) -> network_pb2.EndpointSettings:
    return network_pb2.EndpointSettings(
        ipv6_address=s.ipv6_address, links=list(s.links), mac_address=s.mac_address,
        driver_opts=dict(s.driver_opts), link_local_ips=list(s.link_local_ips))


class Networks:
    def __init__(self, network_client, publish: Publish, resolve_container: ResolveContainer):
        self._network = network_client
        self._publish = publish
        self._resolve = resolve_container

    def _event(self, action: str, actor_id: str, attributes: dict[str, str]) -> None:
        self._publish("network", action, actor_id, attributes)

    async def create(self, r: engine_pb2.CreateNetworkRequest) -> engine_pb2.NetworkInfo:
        n = (await self._network.CreateNetwork(network_pb2.CreateNetworkRequest(
            name=r.name, driver=r.driver, subnet=r.subnet, gateway=r.gateway,
            ip_range=r.ip_range, internal=r.internal, labels=dict(r.labels),
            pools=[network_pb2.IpamPool(subnet=p.subnet, gateway=p.gateway, ip_range=p.ip_range,
                                        aux_addresses=dict(p.aux_addresses)) for p in r.pools],
            enable_ipv6=r.enable_ipv6, options=dict(r.options), attachable=r.attachable))).network
        self._event("create", n.id, {"name": n.name, "type": n.driver})
        return network_info(n)

    async def inspect(self, name: str) -> engine_pb2.NetworkInfo:
        return network_info(await self._get(name))

    async def list(self) -> list[engine_pb2.NetworkInfo]:
        response = await self._network.ListNetworks(network_pb2.ListNetworksRequest())
        return [network_info(n) for n in response.networks]

    async def _get(self, name: str) -> network_pb2.Network:
        try:
            return (await self._network.GetNetwork(network_pb2.GetNetworkRequest(name=name))).network
        except errors.NotFound:
            raise errors.NotFound(f"network {name} not found") from None

    async def remove(self, name: str) -> None:
        n = await self._get(name)
        await self._network.RemoveNetwork(network_pb2.RemoveNetworkRequest(name=n.id))
        self._event("destroy", n.id, {"name": n.name, "type": n.driver})

    async def prune(self, r: engine_pb2.PruneNetworksRequest | None = None) -> list[str]:
        r = r or engine_pb2.PruneNetworksRequest()
        if not (r.labels or r.not_labels or r.until):
            response = await self._network.PruneNetworks(network_pb2.PruneNetworksRequest())
            for name in response.removed:
                self._event("destroy", "", {"name": name, "type": "bridge"})
            return list(response.removed)
        # With filters: the unused user-defined networks that match, removed one by one (a
        # network a container joined meanwhile is refused by the service and kept).
        until = _time(r.until) if r.until else None
        removed = []
        for n in (await self._network.ListNetworks(network_pb2.ListNetworksRequest())).networks:
            labels = dict(n.labels)
            if n.driver != "bridge" or n.containers or n.name == "bridge":
                continue
            if not all(label_matches(labels, x) for x in r.labels):
                continue
            if any(label_matches(labels, x) for x in r.not_labels):
                continue
            if until is not None and _time(n.created) >= until:
                continue
            try:
                await self._network.RemoveNetwork(network_pb2.RemoveNetworkRequest(name=n.id))
            except (errors.FailedPrecondition, errors.NotFound):
                continue
            self._event("destroy", n.id, {"name": n.name, "type": n.driver})
            removed.append(n.name)
        return removed

    async def connect(self, r: engine_pb2.ConnectNetworkRequest) -> None:
        cid = await self._resolve(r.container)
        n = await self._get(r.network)
        await self._network.ConnectNetwork(network_pb2.ConnectNetworkRequest(
            container_id=cid, network=n.id, ipv4_address=r.ipv4_address, aliases=list(r.aliases),
            settings=endpoint_settings(r.settings)))
        self._event("connect", n.id, {"name": n.name, "type": n.driver, "container": cid})

    async def nodes(self) -> engine_pb2.ListNodesResponse:
        response = await self._network.ListNodes(network_pb2.ListNodesRequest())
        return engine_pb2.ListNodesResponse(self=response.self, nodes=[engine_pb2.NodeInfo(
            name=n.name, address=n.address, cpus=n.cpus, memory=n.memory, started=n.started)
            for n in response.nodes])

    async def disconnect(self, r: engine_pb2.DisconnectNetworkRequest) -> None:
        cid = await self._resolve(r.container)
        n = await self._get(r.network)
        await self._network.DisconnectNetwork(
            network_pb2.DisconnectNetworkRequest(container_id=cid, network=n.id))
        self._event("disconnect", n.id, {"name": n.name, "type": n.driver, "container": cid})


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidArgument(f"invalid time {text!r}: want RFC 3339") from None
