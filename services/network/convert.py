"""Protobuf <-> domain types for the network service; protobuf stops here."""

from __future__ import annotations

from berth.network.v1 import network_pb2 as pb
from berth.types.v1 import mount_pb2
from berth.types.v1 import port_pb2

from services.network.service import (EndpointSettings, EndpointView, PoolRequest, PortRequest,
                                      endpoint_id, parse_port_request)
from services.network.cluster import Node
from services.network.store import Attachment, Network


def network_to_pb(network: Network, endpoints: list[Attachment] | None = None) -> pb.Network:
    o = network.options
    out = pb.Network(id=network.id, name=network.name, driver=network.driver,
                     labels=network.labels, subnet=o.get("subnet", ""),
                     gateway=o.get("gateway", ""), ip_range=o.get("ip_range", ""),
                     internal=bool(o.get("internal")), bridge=o.get("bridge", ""),
                     created=network.created_at,
                     containers=[a.container_id for a in endpoints or []],
                     enable_ipv6=bool(o.get("subnet6")), options=o.get("driver_options", {}),
                     attachable=bool(o.get("attachable")), vni=int(o.get("vni") or 0),
                     mtu=int(o.get("mtu") or 0))
    if o.get("subnet"):
        out.pools.append(pb.IpamPool(subnet=o["subnet"], gateway=o["gateway"],
                                     ip_range=o.get("ip_range", ""), aux_addresses=o.get("aux", {})))
    if o.get("subnet6"):
        out.pools.append(pb.IpamPool(subnet=o["subnet6"], gateway=o["gateway6"],
                                     ip_range=o.get("ip_range6", ""), aux_addresses=o.get("aux6", {})))
    for a in endpoints or []:
        out.endpoints.append(pb.NetworkEndpoint(
            container_id=a.container_id, name=a.name, endpoint_id=endpoint_id(a.container_id, network.id),
            mac_address=a.mac_address,
            ipv4_address=f"{a.address}/{o['subnet'].split('/')[1]}" if a.address else "",
            ipv6_address=f"{a.ipv6_address}/{o['subnet6'].split('/')[1]}" if a.ipv6_address else ""))
    return out


def pools_from_pb(pools) -> tuple[PoolRequest, ...]:
    return tuple(PoolRequest(p.subnet, p.gateway, p.ip_range, dict(p.aux_addresses)) for p in pools)


def settings_from_pb(s: pb.EndpointSettings) -> EndpointSettings:
    return EndpointSettings(ipv6_address=s.ipv6_address, links=tuple(s.links), mac_address=s.mac_address,
                            driver_opts=dict(s.driver_opts), link_local_ips=tuple(s.link_local_ips))


def endpoint_to_pb(view: EndpointView) -> pb.Endpoint:
    e = view.endpoint
    out = pb.Endpoint(container_id=e.container_id, network=e.network_name, netns_path=e.netns_path)
    for a in view.attachments:
        network = view.networks.get(a.network_id)
        options = network.options if network else {}
        out.attachments.append(pb.Attachment(
            network=a.network_name, network_id=a.network_id, ifname=a.ifname,
            ipv4_address=a.address, prefix_len=int(options.get("subnet", "0/0").split("/")[1]),
            gateway=options.get("gateway", ""), aliases=list(a.aliases),
            settings=pb.EndpointSettings(ipv6_address=a.requested_ipv6, links=list(a.links),
                                         mac_address=a.mac_address, driver_opts=a.driver_opts,
                                         link_local_ips=list(a.link_local_ips)),
            requested_ipv4=a.requested_ipv4, ipv6_address=a.ipv6_address,
            ipv6_prefix_len=int(options["subnet6"].split("/")[1]) if a.ipv6_address else 0,
            ipv6_gateway=options.get("gateway6", "") if a.ipv6_address else "",
            mac_address=a.mac_address, endpoint_id=endpoint_id(a.container_id, a.network_id)))
    out.ports.extend(ports_to_pb(view.ports))
    for source, target in view.mounts:
        out.mounts.append(mount_pb2.Mount(type="bind", source=source, target=target,
                                          options=["rbind", "rw"]))
    return out


def ports_from_pb(ports) -> tuple[PortRequest, ...]:
    return tuple(parse_port_request(p.protocol, p.host_ip, p.host_port, p.container_port)
                 for p in ports)


def node_to_pb(node: Node) -> pb.Node:
    return pb.Node(name=node.name, address=node.address, cpus=node.cpus, memory=node.memory,
                   started=node.started)


def ports_to_pb(ports) -> list[port_pb2.PortBinding]:
    return [port_pb2.PortBinding(protocol=p.protocol, host_ip=p.host_ip, host_port=p.host_port,
                                 container_port=p.container_port) for p in ports]
