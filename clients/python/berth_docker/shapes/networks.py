"""Networks as docker shows them (`network inspect`, `GET /networks`), and a container's place on one
(`inspect`'s NetworkSettings.Networks entries)."""

from __future__ import annotations

from berth.engine.v1 import engine_pb2
from berth_docker.times import ZERO_TIME


def network_json(n: engine_pb2.NetworkInfo) -> dict:
    pools = []
    for p in n.pools:
        pool = {k: v for k, v in (("Subnet", p.subnet), ("IPRange", p.ip_range), ("Gateway", p.gateway)) if v}
        if p.aux_addresses:
            pool["AuxiliaryAddresses"] = dict(p.aux_addresses)
        pools.append(pool)
    # An overlay spans the cluster: docker's classic multi-host scope ("global", an external store).
    scope = "global" if n.driver == "overlay" else "local"
    return {"Name": n.name, "Id": n.id, "Created": n.created or ZERO_TIME, "Scope": scope, "Driver": n.driver,
            "EnableIPv6": n.enable_ipv6, "IPAM": {"Driver": "default", "Options": None, "Config": pools},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {e.container_id: {"Name": e.name, "EndpointID": e.endpoint_id,
                                            "MacAddress": e.mac_address, "IPv4Address": e.ipv4_address,
                                            "IPv6Address": e.ipv6_address} for e in n.endpoints},
            # Only the options the user gave, as docker: compose compares them with its own.
            "Options": dict(n.options),
            "Labels": dict(n.labels)}


def endpoint_json(n: engine_pb2.ContainerNetwork) -> dict:
    s = n.settings
    ipam = {k: v for k, v in (("IPv4Address", n.requested_ipv4), ("IPv6Address", s.ipv6_address)) if v}
    if s.link_local_ips:
        ipam["LinkLocalIPs"] = list(s.link_local_ips)
    return {"IPAMConfig": ipam or None, "Links": list(s.links) or None, "Aliases": list(n.aliases) or None,
            "MacAddress": n.mac_address, "DriverOpts": dict(s.driver_opts) or None,
            "NetworkID": n.network_id, "EndpointID": n.endpoint_id, "Gateway": n.gateway,
            "IPAddress": n.ipv4_address, "IPPrefixLen": n.prefix_len, "IPv6Gateway": n.ipv6_gateway,
            "GlobalIPv6Address": n.ipv6_address, "GlobalIPv6PrefixLen": n.ipv6_prefix_len,
            "DNSNames": None}
