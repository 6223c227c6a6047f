"""What a container asks of the network service: its Attach at `run`, and its endpoints in `ps`/`inspect`.

The gateway turns `-p`/`-P` into port bindings and adds each container's published
ports and addresses to what `ps`/`inspect` show. The network verbs themselves
(create, connect, prune, ...) are the NetworkBackend, services/gateway/backends/networks.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from berth.types.v1 import port_pb2
from services.common import errors

DEFAULT_NETWORK = "bridge"
# `--network container:<id>`: the container joins another container's namespace.
CONTAINER_MODE = "container:"


def attach_request(cid: str, name: str, cfg: engine_pb2.ContainerConfig,
                   image_config: image_pb2.ImageConfig) -> network_pb2.CreateEndpointRequest:
    """The Attach a `run` makes: first network, names, --ip, aliases, -p and -P; its veth
    is plumbed while the container is created (the create awaits it, see AwaitEndpoint)."""
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
    s = cfg.endpoint_settings
    return network_pb2.CreateEndpointRequest(
        container_id=cid, network=cfg.network_mode or DEFAULT_NETWORK, name=name,
        hostname=cfg.hostname or cid[:12], ipv4_address=cfg.ipv4_address,
        aliases=list(cfg.network_aliases), ports=ports, publish_at_start=True, plumb_later=True,
        settings=network_pb2.EndpointSettings(
            ipv6_address=s.ipv6_address, links=list(s.links), mac_address=s.mac_address,
            driver_opts=dict(s.driver_opts), link_local_ips=list(s.link_local_ips)))


async def shared_endpoint(network_client, target_id: str) -> network_pb2.Endpoint:
    """The namespace and files of the container `target_id`, for one that shares them. The
    namespace is pinned by the network service, so it outlives the target's processes."""
    response = await network_client.ListEndpoints(network_pb2.ListEndpointsRequest())
    endpoint = next((e for e in response.endpoints if e.container_id == target_id), None)
    if endpoint is None:
        raise errors.FailedPrecondition(
            f"cannot join the network of container {target_id[:12]}: it has no network namespace "
            "(it shares another container's; join that one)")
    return network_pb2.Endpoint(container_id=target_id, network=endpoint.network,
                                netns_path=endpoint.netns_path, mounts=list(endpoint.mounts))


async def given(endpoint: network_pb2.Endpoint):
    """An endpoint already known, in the shape CreateEndpoint answers."""
    return network_pb2.CreateEndpointResponse(endpoint=endpoint)


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
            s = a.settings
            info.networks.append(engine_pb2.ContainerNetwork(
                network=a.network, network_id=a.network_id, ipv4_address=a.ipv4_address,
                prefix_len=a.prefix_len, gateway=a.gateway, aliases=list(a.aliases),
                settings=engine_pb2.NetworkEndpointSettings(
                    ipv6_address=s.ipv6_address, links=list(s.links), mac_address=s.mac_address,
                    driver_opts=dict(s.driver_opts), link_local_ips=list(s.link_local_ips)),
                requested_ipv4=a.requested_ipv4, ipv6_address=a.ipv6_address,
                ipv6_prefix_len=a.ipv6_prefix_len, ipv6_gateway=a.ipv6_gateway,
                mac_address=a.mac_address, endpoint_id=a.endpoint_id))
