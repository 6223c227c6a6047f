"""Networks as docker shows them (`network inspect`, `GET /networks`)."""

from __future__ import annotations

from berth.engine.v1 import engine_pb2
from berth_docker.times import ZERO_TIME


def network_json(n: engine_pb2.NetworkInfo) -> dict:
    ipam = [{k: v for k, v in (("Subnet", n.subnet), ("Gateway", n.gateway), ("IPRange", n.ip_range)) if v}]
    return {"Name": n.name, "Id": n.id, "Created": n.created or ZERO_TIME, "Scope": "local", "Driver": n.driver,
            "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": ipam if n.subnet else []},
            "Internal": n.internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": {c: {} for c in n.containers},
            "Options": {"com.docker.network.bridge.name": n.bridge} if n.bridge else {},
            "Labels": dict(n.labels)}
