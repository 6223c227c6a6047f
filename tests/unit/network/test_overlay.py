"""The overlay driver's rules that need no kernel and no etcd: options, records, endpoints."""

from __future__ import annotations

import pytest

from services.common.errors import AlreadyExists, InvalidArgument
from services.network import ipam
from services.network.cluster import OverlayRecord, Peer, parse_endpoints
from services.network.overlay import (MTU_OPTION, VNI_BASE, check_options, local_network,
                                      new_record)


def _record(name: str, vni: int, subnet: str) -> OverlayRecord:
    return OverlayRecord(id=name * 8, name=name, vni=vni, subnet=subnet,
                         gateway=str(ipam.parse_subnet(subnet).network_address + 1))


def test_encrypted_is_refused_by_name():
    with pytest.raises(InvalidArgument, match="encrypted"):
        check_options({"encrypted": ""})


def test_unknown_options_are_refused_and_the_mtu_is_checked():
    with pytest.raises(InvalidArgument, match="com.docker.network.bridge.name"):
        check_options({"com.docker.network.bridge.name": "x"})
    with pytest.raises(InvalidArgument, match="576 to 9000"):
        check_options({MTU_OPTION: "70000"})
    check_options({MTU_OPTION: "1400"})


def test_new_record_takes_a_free_vni_and_subnet():
    existing = [_record("a", VNI_BASE, "10.210.0.0/24"), _record("b", VNI_BASE + 2, "10.210.1.0/24")]
    r = new_record(existing, "c", "", "", "", False, True, {}, {}, "now", [])
    assert r.vni == VNI_BASE + 1 and r.subnet == "10.210.2.0/24" and r.gateway == "10.210.2.1"
    assert r.attachable


def test_new_record_refuses_a_taken_name_or_an_overlapping_subnet():
    existing = [_record("a", VNI_BASE, "10.213.0.0/16")]
    with pytest.raises(AlreadyExists):
        new_record(existing, "a", "", "", "", False, False, {}, {}, "now", [])
    with pytest.raises(InvalidArgument, match="overlaps"):
        new_record(existing, "b", "10.213.5.0/24", "", "", False, False, {}, {}, "now", [])
    # A subnet a local bridge network or route of this node holds is refused too.
    with pytest.raises(InvalidArgument, match="overlaps"):
        new_record([], "b", "172.30.0.0/24", "", "", False, False, {}, {}, "now",
                   [ipam.parse_subnet("172.30.0.0/16")])


def test_local_mirror_names_its_devices_from_the_id():
    network = local_network(_record("web", 4100, "10.210.9.0/24"))
    assert network.driver == "overlay"
    assert network.options["bridge"] == "bo-" + network.id[:12]
    assert network.options["vxlan"] == "vx-" + network.id[:12]
    assert len(network.options["bridge"]) <= 15 and network.options["vni"] == "4100"


def test_peer_names_and_store_endpoints():
    peer = Peer(network_id="n", address="10.0.0.2", mac="02:42:0a:00:00:02", container_id="c" * 64,
                node="node1", vtep="192.0.2.1", name="Web", aliases=("www",))
    assert {"web", "www", "c" * 12} <= peer.names()
    assert parse_endpoints("http://127.0.0.1:2379,http://127.0.0.2:2379") == ("127.0.0.1", 2379)
    assert parse_endpoints("10.0.0.1:23790") == ("10.0.0.1", 23790)
    with pytest.raises(ValueError):
        parse_endpoints("http://nohost")


def test_a_node_in_no_cluster_refuses_overlay_networks_and_node_listing(tmp_path):
    import asyncio

    from services.common.errors import FailedPrecondition
    from services.network.netns import Namespaces
    from services.network.service import NetworkService
    from services.network.store import NetworkStore

    store = NetworkStore(str(tmp_path / "network.db"))
    service = NetworkService(store, Namespaces(str(tmp_path / "netns")))
    try:
        with pytest.raises(FailedPrecondition, match="cluster store"):
            asyncio.run(service.create_network("web", driver="overlay"))
        with pytest.raises(FailedPrecondition, match="not in a cluster"):
            asyncio.run(service.list_nodes())
        assert store.find_network("web") is None
    finally:
        store.close()
