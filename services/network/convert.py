"""Protobuf <-> domain types for the network service; protobuf stops here."""

from __future__ import annotations

from berth.network.v1 import network_pb2 as pb
from berth.types.v1 import mount_pb2
from berth.types.v1 import port_pb2

from services.network.service import EndpointView, PortRequest, parse_port_request
from services.network.store import Network


def network_to_pb(network: Network, containers: list[str] | None = None) -> pb.Network:
    o = network.options
    return pb.Network(id=network.id, name=network.name, driver=network.driver,
                      labels=network.labels, subnet=o.get("subnet", ""),
                      gateway=o.get("gateway", ""), ip_range=o.get("ip_range", ""),
                      internal=bool(o.get("internal")), bridge=o.get("bridge", ""),
                      created=network.created_at, containers=containers or [])


def endpoint_to_pb(view: EndpointView) -> pb.Endpoint:
    e = view.endpoint
    out = pb.Endpoint(container_id=e.container_id, network=e.network_name, netns_path=e.netns_path)
    for a in view.attachments:
        network = view.networks.get(a.network_id)
        options = network.options if network else {}
        out.attachments.append(pb.Attachment(
            network=a.network_name, network_id=a.network_id, ifname=a.ifname,
            ipv4_address=a.address, prefix_len=int(options.get("subnet", "0/0").split("/")[1]),
            gateway=options.get("gateway", ""), aliases=list(a.aliases)))
    for p in view.ports:
        out.ports.append(port_pb2.PortBinding(protocol=p.protocol, host_ip=p.host_ip,
                                              host_port=p.host_port, container_port=p.container_port))
    for source, target in view.mounts:
        out.mounts.append(mount_pb2.Mount(type="bind", source=source, target=target,
                                          options=["rbind", "rw"]))
    return out


def ports_from_pb(ports) -> tuple[PortRequest, ...]:
    return tuple(parse_port_request(p.protocol, p.host_ip, p.host_port, p.container_port)
                 for p in ports)
