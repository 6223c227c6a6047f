"""Networks: `berth network ...` over the network service (services/gateway/networks.py).

(gwres owns this module; this is the code moved out of the old Gateway object.)
"""

from __future__ import annotations

from berth.engine.v1 import engine_pb2
from berth.network.v1 import network_pb2
from services.gateway import networks as networks_mod


class Networks(networks_mod.Networks):
    def __init__(self, network, publish, resolve_container):
        super().__init__(network, resolve_container,
                         lambda action, actor, attrs: publish("network", action, actor, attrs))

    async def list(self) -> list[engine_pb2.NetworkInfo]:
        response = await self._network.ListNetworks(network_pb2.ListNetworksRequest())
        return [networks_mod.network_info(n) for n in response.networks]
