"""Protobuf <-> domain types for the network service; protobuf stops here."""

from __future__ import annotations

from berth.network.v1 import network_pb2 as pb

from services.network.store import Endpoint, Network


def network_to_pb(network: Network) -> pb.Network:
    return pb.Network(id=network.id, name=network.name, driver=network.driver,
                      labels=network.labels)


def endpoint_to_pb(endpoint: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(container_id=endpoint.container_id, network=endpoint.network_name,
                       netns_path=endpoint.netns_path)
