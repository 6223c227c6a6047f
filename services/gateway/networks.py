"""The gateway's network verbs and what `run` asks of the network service.

Networks belong to the network service; the gateway resolves container names
to ids, turns `-p`/`-P` into port bindings, publishes network events, and adds
each container's published ports and addresses to what `ps`/`inspect` show.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from berth.types.v1 import port_pb2
from services.common import errors

DEFAULT_NETWORK = "bridge"


def attach_request(cid: str, name: str, cfg: engine_pb2.ContainerConfig,
                   image_config: image_pb2.ImageConfig) -> network_pb2.CreateEndpointRequest:
    """The CreateEndpoint request a `run` makes: first network, names, --ip, aliases, -p and -P."""
    ports = [port_pb2.PortBinding(protocol=p.protocol or "tcp", host_ip=p.host_ip,
                                  host_port=p.host_port, container_port=p.container_port)
             for p in cfg.ports]
    if cfg.publish_all:
        asked = {(p.container_port, p.protocol) for p in ports}
        for spec in image_config.exposed_ports:
            number, _, proto = spec.partition("/")
            proto = proto or "tcp"
            if number.isdigit() and (int(number), proto) not in asked and proto in ("tcp", "udp"):
                ports.append(port_pb2.PortBinding(protocol=proto, container_port=int(number)))
    return network_pb2.CreateEndpointRequest(
        container_id=cid, network=cfg.network_mode or DEFAULT_NETWORK, name=name,
        hostname=cfg.hostname or cid[:12], ipv4_address=cfg.ipv4_address,
        aliases=list(cfg.network_aliases), ports=ports)


def network_info(n: network_pb2.Network) -> engine_pb2.NetworkInfo:
    return engine_pb2.NetworkInfo(
        id=n.id, name=n.name, driver=n.driver, labels=dict(n.labels), subnet=n.subnet,
        gateway=n.gateway, ip_range=n.ip_range, internal=n.internal, bridge=n.bridge,
        created=n.created, containers=list(n.containers))


async def add_endpoints(network_client, infos: Sequence[engine_pb2.ContainerInfo]) -> None:
    """Fill ports and networks of each container from the network service's endpoints."""
    if not infos:
        return
    try:
        response = await network_client.ListEndpoints(network_pb2.ListEndpointsRequest())
    except errors.Unavailable:
        return   # listing still works while the network service restarts
    by_id = {e.container_id: e for e in response.endpoints}
    for info in infos:
        endpoint = by_id.get(info.id)
        if endpoint is None:
            continue
        for p in endpoint.ports:
            info.ports.append(port_pb2.PortBinding(
                protocol=p.protocol, host_ip=p.host_ip, host_port=p.host_port,
                container_port=p.container_port))
        for a in endpoint.attachments:
            info.networks.append(engine_pb2.ContainerNetwork(
                network=a.network, network_id=a.network_id, ipv4_address=a.ipv4_address,
                prefix_len=a.prefix_len, gateway=a.gateway, aliases=list(a.aliases)))


class Networks:
    """`berth network ...` over the network service."""

    def __init__(self, network_client, resolve_container: Callable[[str], Awaitable[str]],
                 publish: Callable[[str, str, dict[str, str]], None]):
        self._network = network_client
        self._resolve = resolve_container
        self._publish = publish

    async def create(self, r: engine_pb2.CreateNetworkRequest) -> engine_pb2.NetworkInfo:
        n = (await self._network.CreateNetwork(network_pb2.CreateNetworkRequest(
            name=r.name, driver=r.driver, subnet=r.subnet, gateway=r.gateway,
            ip_range=r.ip_range, internal=r.internal, labels=dict(r.labels)))).network
        self._publish("create", n.id, {"name": n.name, "type": n.driver})
        return network_info(n)

    async def inspect(self, name: str) -> engine_pb2.NetworkInfo:
        return network_info(await self._get(name))

    async def _get(self, name: str) -> network_pb2.Network:
        try:
            return (await self._network.GetNetwork(network_pb2.GetNetworkRequest(name=name))).network
        except errors.NotFound:
            raise errors.NotFound(f"network {name} not found") from None

    async def remove(self, name: str) -> None:
        n = await self._get(name)
        await self._network.RemoveNetwork(network_pb2.RemoveNetworkRequest(name=n.id))
        self._publish("destroy", n.id, {"name": n.name, "type": n.driver})

    async def prune(self) -> list[str]:
        response = await self._network.PruneNetworks(network_pb2.PruneNetworksRequest())
        for name in response.removed:
            self._publish("destroy", "", {"name": name, "type": "bridge"})
        return list(response.removed)

    async def connect(self, r: engine_pb2.ConnectNetworkRequest) -> None:
        cid = await self._resolve(r.container)
        n = await self._get(r.network)
        await self._network.ConnectNetwork(network_pb2.ConnectNetworkRequest(
            container_id=cid, network=n.id, ipv4_address=r.ipv4_address, aliases=list(r.aliases)))
        self._publish("connect", n.id, {"name": n.name, "type": n.driver, "container": cid})

    async def disconnect(self, r: engine_pb2.DisconnectNetworkRequest) -> None:
        cid = await self._resolve(r.container)
        n = await self._get(r.network)
        await self._network.DisconnectNetwork(
            network_pb2.DisconnectNetworkRequest(container_id=cid, network=n.id))
        self._publish("disconnect", n.id, {"name": n.name, "type": n.driver, "container": cid})
