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
from services.common import errors

DEFAULT_NETWORK = "bridge"


def attach_request(cid: str, name: str, cfg: engine_pb2.ContainerConfig,
                   image_config: image_pb2.ImageConfig) -> network_pb2.AttachRequest:
    """The Attach a `run` makes: first network, names, --ip, aliases, -p and -P."""
    ports = [network_pb2.PortBinding(protocol=p.protocol or "tcp", host_ip=p.host_ip,
                                     host_port=p.host_port, container_port=p.container_port)
             for p in cfg.ports]
    if cfg.publish_all:
        asked = {(p.container_port, p.protocol) for p in ports}
        for spec in image_config.exposed_ports:
            number, _, proto = spec.partition("/")
            proto = proto or "tcp"
            if number.isdigit() and (int(number), proto) not in asked and proto in ("tcp", "udp"):
                ports.append(network_pb2.PortBinding(protocol=proto, container_port=int(number)))
    return network_pb2.AttachRequest(
        container_id=cid, network=cfg.network_mode or DEFAULT_NETWORK, name=name,
        hostname=cfg.hostname or cid[:12], ipv4_address=cfg.ipv4_address,
        aliases=list(cfg.network_aliases), ports=ports)


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
            info.ports.append(engine_pb2.PortBinding(
                protocol=p.protocol, host_ip=p.host_ip, host_port=p.host_port,
                container_port=p.container_port))
        for a in endpoint.attachments:
            info.networks.append(engine_pb2.ContainerNetwork(
                network=a.network, network_id=a.network_id, ipv4_address=a.ipv4_address,
                prefix_len=a.prefix_len, gateway=a.gateway, aliases=list(a.aliases)))
