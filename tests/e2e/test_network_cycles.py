"""200 create/connect/remove cycles leave no veths, namespaces, addresses,
leases or nftables rules behind (issue #4's reliability promise), counted."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from berth.engine.v1 import engine_pb2 as pb
from berth.network.v1 import network_pb2, network_pb2_grpc
from berth.types.v1 import port_pb2

pytestmark = pytest.mark.slow
CYCLES = 200


def census(engine, bridges: set[str]) -> dict[str, object]:
    links = json.loads(subprocess.run(["ip", "-j", "link", "show", "type", "veth"],
                                      capture_output=True, text=True, check=True).stdout or "[]")
    ruleset = subprocess.run(["nft", "list", "table", "inet", engine.config.nft_table],
                             capture_output=True, text=True, check=True).stdout
    netns_dir = os.path.join(engine.config.run_root, "netns")
    endpoints = network_pb2_grpc.NetworkServiceStub(engine.channel("network")).ListEndpoints(
        network_pb2.ListEndpointsRequest()).endpoints
    return {
        "veths_on_our_bridges": sum(1 for link in links if link.get("master") in bridges),
        "netns": sorted(os.listdir(netns_dir)) if os.path.isdir(netns_dir) else [],
        "endpoints": len(endpoints),
        "ruleset": ruleset,
    }


def test_create_connect_remove_cycles_leave_nothing(engine, busybox_image):
    stub = engine.engine_stub()
    net = stub.CreateNetwork(pb.CreateNetworkRequest(name="cycles-net")).network
    bridges = {engine.config.bridge_name, net.bridge}
    try:
        before = census(engine, bridges)
        for i in range(CYCLES):
            cid = stub.CreateContainer(pb.CreateContainerRequest(config=pb.ContainerConfig(
                image=busybox_image, cmd=["sleep", "30"], name=f"cycle{i}",
                ports=[port_pb2.PortBinding(protocol="tcp", container_port=80)]))).id
            stub.ConnectNetwork(pb.ConnectNetworkRequest(network="cycles-net", container=cid,
                                                         aliases=[f"alias{i}"]))
            if i % 10 == 0:
                # Some run for real, so their veths and rules are live when removed.
                stub.StartContainer(pb.StartContainerRequest(id=cid))
            stub.RemoveContainer(pb.RemoveContainerRequest(id=cid, force=True))
        # Host ends of removed veths go shortly after the reply (the kernel's
        # namespace teardown, or berth's deferred delete): give them a moment.
        deadline = time.monotonic() + 10
        while (after := census(engine, bridges)) != before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert after == before
        leases = stub.InspectNetwork(pb.InspectNetworkRequest(name="cycles-net")).network
        assert not leases.containers
    finally:
        stub.RemoveNetwork(pb.RemoveNetworkRequest(name="cycles-net"))
    assert "cycles-net" not in [n.name for n in stub.ListNetworks(pb.ListNetworksRequest()).networks]
