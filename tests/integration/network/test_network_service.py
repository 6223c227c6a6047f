"""The network service on a real kernel: namespaces made, pinned, removed, reconciled."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import grpc
import pytest

from berth.network.v1 import network_pb2 as pb
from berth.network.v1 import network_pb2_grpc as pb_grpc
from tests.support.engine import Engine, mounts_under


@pytest.fixture(scope="module")
def net_engine():
    eng = Engine(services=("network",)).start()
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture
def net(net_engine):
    stub = pb_grpc.NetworkServiceStub(net_engine.channel("network"))
    yield stub
    for endpoint in stub.ListEndpoints(pb.ListEndpointsRequest()).endpoints:
        stub.DeleteEndpoint(pb.DeleteEndpointRequest(container_id=endpoint.container_id))


def netns_dir(engine: Engine) -> str:
    return os.path.join(engine.config.run_root, "netns")


def addresses_in(netns_path: str) -> str:
    return subprocess.run(["nsenter", f"--net={netns_path}", "ip", "-br", "addr"],
                          capture_output=True, text=True, check=True).stdout


def test_builtin_networks_have_stable_ids(net, net_engine):
    first = {n.name: (n.id, n.driver) for n in net.ListNetworks(pb.ListNetworksRequest()).networks}
    assert first.keys() == {"none", "host", "bridge"}
    assert first["bridge"][1] == "bridge"
    assert first["none"][1] == "null" and first["host"][1] == "host"
    assert net.GetNetwork(pb.GetNetworkRequest(name=first["none"][0])).network.name == "none"
    assert net.GetNetwork(pb.GetNetworkRequest(name=first["host"][0][:12])).network.name == "host"


def test_unknown_network_is_not_found(net):
    with pytest.raises(grpc.RpcError) as err:
        net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c1", network="foo"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "network foo not found"
    with pytest.raises(grpc.RpcError) as err:
        net.GetNetwork(pb.GetNetworkRequest(name="foo"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_none_gives_a_namespace_with_loopback_up(net, net_engine):
    endpoint = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c-none", network="none")).endpoint
    assert endpoint.netns_path == os.path.join(netns_dir(net_engine), "c-none")
    assert os.stat(endpoint.netns_path).st_ino != os.stat("/proc/self/ns/net").st_ino
    out = addresses_in(endpoint.netns_path)
    assert out.split()[0] == "lo" and "127.0.0.1/8" in out
    assert len(out.strip().splitlines()) == 1, out  # nothing but loopback


def test_attach_is_idempotent(net):
    first = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c-idem", network="none")).endpoint
    inode = os.stat(first.netns_path).st_ino
    again = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c-idem", network="none")).endpoint
    assert again == first and os.stat(again.netns_path).st_ino == inode
    with pytest.raises(grpc.RpcError) as err:
        net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c-idem", network="host"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_host_shares_the_host_namespace(net):
    endpoint = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c-host", network="host")).endpoint
    assert endpoint.netns_path == "" and endpoint.network == "host"
    listed = {e.container_id: e for e in net.ListEndpoints(pb.ListEndpointsRequest()).endpoints}
    assert listed["c-host"] == endpoint


def test_detach_removes_namespace_and_endpoint(net, net_engine):
    endpoint = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c-det", network="none")).endpoint
    net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id="c-det"))
    assert not os.path.exists(endpoint.netns_path)
    assert endpoint.netns_path not in mounts_under(netns_dir(net_engine))
    assert not net.ListEndpoints(pb.ListEndpointsRequest()).endpoints
    net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id="c-det"))  # unknown is fine
    net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id="never-attached"))


def test_a_network_its_containers_left_can_be_pruned_and_removed(net):
    """Regression: the endpoint still named the network it was attached to first, and prune
    (then rm) failed on the foreign key with a 500."""
    for name in ("left-a", "left-b"):
        net.CreateNetwork(pb.CreateNetworkRequest(name=name))
    try:
        # On left-a first, then left-b too; leaves left-a: its endpoint moves to left-b.
        net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c-left", network="left-a"))
        net.ConnectNetwork(pb.ConnectNetworkRequest(container_id="c-left", network="left-b"))
        net.DisconnectNetwork(pb.DisconnectNetworkRequest(container_id="c-left", network="left-a"))
        [endpoint] = net.ListEndpoints(pb.ListEndpointsRequest()).endpoints
        assert endpoint.network == "left-b"
        assert list(net.PruneNetworks(pb.PruneNetworksRequest()).removed) == ["left-a"]
        # Leaves its only network: only loopback is left, as on "none"; left-b can go.
        net.DisconnectNetwork(pb.DisconnectNetworkRequest(container_id="c-left", network="left-b"))
        [endpoint] = net.ListEndpoints(pb.ListEndpointsRequest()).endpoints
        assert endpoint.network == "none"
        net.RemoveNetwork(pb.RemoveNetworkRequest(name="left-b"))
        names = {n.name for n in net.ListNetworks(pb.ListNetworksRequest()).networks}
        assert names == {"none", "host", "bridge"}
    finally:
        net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id="c-left"))
        for name in ("left-a", "left-b"):
            try:
                net.RemoveNetwork(pb.RemoveNetworkRequest(name=name))
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND


def test_bad_container_id_is_rejected(net, net_engine):
    for bad in ("", "../escape", "a/b"):
        with pytest.raises(grpc.RpcError) as err:
            net.CreateEndpoint(pb.CreateEndpointRequest(container_id=bad, network="none"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert os.listdir(netns_dir(net_engine)) == []


@pytest.mark.slow
def test_100_attach_detach_cycles_leave_nothing(net, net_engine):
    directory = netns_dir(net_engine)
    for i in range(100):
        net.CreateEndpoint(pb.CreateEndpointRequest(container_id=f"cycle{i % 7}", network="none"))
        net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id=f"cycle{i % 7}"))
    assert os.listdir(directory) == []
    assert mounts_under(directory) == [directory]  # only the shared bind of the directory


def test_sigkill_and_restart_keep_namespace_and_endpoint(fresh_network_engine):
    eng = fresh_network_engine
    net = pb_grpc.NetworkServiceStub(eng.channel("network"))
    endpoint = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="survivor", network="none")).endpoint
    inode = os.stat(endpoint.netns_path).st_ino
    # A process inside the namespace stands for a running container.
    sleeper = subprocess.Popen(["nsenter", f"--net={endpoint.netns_path}", "sleep", "60"])
    try:
        old = eng.kill_service("network", signal.SIGKILL)
        _wait_new_pid(eng, "network", old)
        eng.wait_serving("network")
        assert os.stat(endpoint.netns_path).st_ino == inode
        assert os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino == inode
        net = pb_grpc.NetworkServiceStub(eng.channel("network"))
        assert list(net.ListEndpoints(pb.ListEndpointsRequest()).endpoints) == [endpoint]

        eng.restart()
        net = pb_grpc.NetworkServiceStub(eng.channel("network"))
        assert os.stat(endpoint.netns_path).st_ino == inode
        assert list(net.ListEndpoints(pb.ListEndpointsRequest()).endpoints) == [endpoint]
        assert "127.0.0.1/8" in addresses_in(endpoint.netns_path)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_reconcile_recreates_vanished_and_removes_strays(fresh_network_engine):
    eng = fresh_network_engine
    net = pb_grpc.NetworkServiceStub(eng.channel("network"))
    kept = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="kept", network="none")).endpoint
    lost = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="lost", network="none")).endpoint
    eng.terminate()
    # Someone removed one namespace by hand and left a stray of their own.
    subprocess.run(["umount", lost.netns_path], check=True)
    os.unlink(lost.netns_path)
    stray = os.path.join(netns_dir(eng), "stray")
    open(stray, "w").close()
    subprocess.run(["unshare", "--net=" + stray, "true"], check=True)
    eng.start()
    # (inode numbers of freed namespaces are reused, so they prove nothing here)
    assert lost.netns_path in mounts_under(lost.netns_path)
    assert "127.0.0.1/8" in addresses_in(lost.netns_path)
    assert not os.path.exists(stray) and stray not in mounts_under(stray)
    assert sorted(os.listdir(netns_dir(eng))) == ["kept", "lost"]
    assert {e.container_id for e in pb_grpc.NetworkServiceStub(eng.channel("network"))
            .ListEndpoints(pb.ListEndpointsRequest()).endpoints} == {"kept", "lost"}
    assert '"endpoint_netns_recreated"' in eng.log_text()
    assert kept.netns_path in mounts_under(kept.netns_path)


@pytest.fixture
def fresh_network_engine():
    eng = Engine(services=("network",)).start()
    try:
        yield eng
    finally:
        eng.stop()


def _wait_new_pid(eng: Engine, service: str, old: int, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = eng.pid_of(service)
            if pid != old:
                return pid
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"berthd did not restart {service}:\n{eng.log_text()}")


def test_a_mac_asked_for_never_blocks_the_address_it_is_derived_from(net):
    """Regression: a container given the MAC docker derives from an address made every
    later container that got that address fail with "MAC address ... already in use"."""
    net.CreateNetwork(pb.CreateNetworkRequest(name="macs", subnet="10.231.7.0/24"))
    try:
        asked = "02:42:0a:e7:07:03"  # what 10.231.7.3 derives
        first = net.CreateEndpoint(pb.CreateEndpointRequest(
            container_id="c-mac1", network="macs", settings=pb.EndpointSettings(mac_address=asked))).endpoint
        assert first.attachments[0].mac_address == asked
        second = net.CreateEndpoint(pb.CreateEndpointRequest(container_id="c-mac2", network="macs")).endpoint
        assert second.attachments[0].ipv4_address == "10.231.7.3"
        assert second.attachments[0].mac_address not in ("", asked)
        # Asking for a MAC in use is still refused, naming it.
        with pytest.raises(grpc.RpcError) as err:
            net.CreateEndpoint(pb.CreateEndpointRequest(
                container_id="c-mac3", network="macs", settings=pb.EndpointSettings(mac_address=asked)))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS or "already in use" in err.value.details()
    finally:
        for cid in ("c-mac1", "c-mac2", "c-mac3"):
            net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id=cid))
        net.RemoveNetwork(pb.RemoveNetworkRequest(name="macs"))


def test_a_host_veth_end_left_behind_is_replaced_by_the_new_pair(tmp_path):
    """A crash can leave a container's host-side veth; the pair is made again under that name."""
    from services.network import bridge as kernel
    from services.network.netns import Namespaces
    tag = f"{os.getpid() % 100000}"
    bridge, left, peer = f"btlb{tag}", f"btlh{tag}", f"btlp{tag}"
    namespaces = Namespaces(str(tmp_path))
    netns = namespaces.create("c1")
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "add", left, "type", "veth", "peer", "name", peer], check=True)
        kernel.add_endpoint(bridge, netns, kernel.Link(ifname="eth0", address="10.251.0.2", prefix_len=24,
                                                       gateway="", host_ifname=left))
        assert kernel.netns_links(netns) == ["lo", "eth0"]
        shown = subprocess.run(["ip", "-o", "link", "show", left], capture_output=True, text=True).stdout
        assert f"master {bridge}" in shown
        # The old pair went with its host end.
        assert subprocess.run(["ip", "link", "show", peer], capture_output=True).returncode != 0
    finally:
        for name in (left, peer, bridge):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        namespaces.remove("c1")
        # The directory is made a shared mount of its own for the namespaces under it.
        for point in mounts_under(str(tmp_path)):
            subprocess.run(["umount", "-l", point], capture_output=True)


def test_ports_asked_for_at_create_are_held_only_between_publish_and_unpublish(net):
    """docker binds host ports while a container runs: one stopped frees its port at once."""
    asked = [pb_port(host_port=18461, container_port=80)]
    net.CreateEndpoint(pb.CreateEndpointRequest(container_id="pa", network="bridge", name="pa",
                                                ports=asked, publish_at_start=True))
    # A second container asks for the same port: fine while neither runs.
    net.CreateEndpoint(pb.CreateEndpointRequest(container_id="pb", network="bridge", name="pb",
                                                ports=asked, publish_at_start=True))
    assert not _ports_of(net, "pa")
    bound = net.PublishPorts(pb.PublishPortsRequest(container_id="pa")).ports
    assert [(p.host_ip, p.host_port) for p in bound] == [("0.0.0.0", 18461)]
    assert net.PublishPorts(pb.PublishPortsRequest(container_id="pa")).ports == bound  # idempotent
    with pytest.raises(grpc.RpcError) as err:
        net.PublishPorts(pb.PublishPortsRequest(container_id="pb"))
    assert err.value.code() == grpc.StatusCode.ABORTED   # Conflict
    assert "port is already allocated" in err.value.details()
    net.UnpublishPorts(pb.UnpublishPortsRequest(container_id="pa"))
    assert not _ports_of(net, "pa")
    assert [p.host_port for p in net.PublishPorts(pb.PublishPortsRequest(container_id="pb")).ports] == [18461]
    # Bound for the endpoint's life without publish_at_start (a pod's hostPort).
    net.CreateEndpoint(pb.CreateEndpointRequest(container_id="pc", network="bridge", name="pc",
                                                ports=[pb_port(host_port=18462, container_port=80)]))
    net.UnpublishPorts(pb.UnpublishPortsRequest(container_id="pc"))
    assert [p.host_port for p in _ports_of(net, "pc")] == [18462]


def test_a_removed_link_no_longer_names_the_container(net):
    net.CreateEndpoint(pb.CreateEndpointRequest(container_id="target", network="bridge", name="target"))
    made = net.CreateEndpoint(pb.CreateEndpointRequest(
        container_id="linker", network="bridge", name="linker",
        settings=pb.EndpointSettings(links=["target:db", "target:other"]))).endpoint
    hosts = next(m.source for m in made.mounts if m.target == "/etc/hosts")
    assert "\tdb target" in open(hosts).read()
    net.RemoveLink(pb.RemoveLinkRequest(container_id="linker", alias="db"))
    assert "\tdb target" not in open(hosts).read() and "\tother target" in open(hosts).read()
    (attachment,) = next(e for e in net.ListEndpoints(pb.ListEndpointsRequest()).endpoints
                         if e.container_id == "linker").attachments
    assert list(attachment.settings.links) == ["target:other"]
    with pytest.raises(grpc.RpcError) as err:
        net.RemoveLink(pb.RemoveLinkRequest(container_id="linker", alias="db"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def pb_port(**kw):
    from berth.types.v1 import port_pb2
    return port_pb2.PortBinding(protocol="tcp", **kw)


def _ports_of(net, cid: str):
    return next(e for e in net.ListEndpoints(pb.ListEndpointsRequest()).endpoints if e.container_id == cid).ports


def _bridge_ports(eng: Engine) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "master", eng.config.bridge_name],
                         capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _wait_no_bridge_ports(eng: Engine, timeout: float = 10) -> None:
    """A detach deletes the host veth ends after its reply (see NetworkService.detach)."""
    deadline = time.monotonic() + timeout
    while _bridge_ports(eng):
        assert time.monotonic() < deadline, _bridge_ports(eng)
        time.sleep(0.05)


def test_plumb_later_replies_with_the_address_and_awaits_the_veth(net, net_engine):
    """plumb_later: the reply has the address and namespace; AwaitEndpoint returns once the
    veth is in place; a detach before the plumbing finished leaves nothing."""
    cid = "ab" * 32
    endpoint = net.CreateEndpoint(pb.CreateEndpointRequest(
        container_id=cid, network="bridge", plumb_later=True)).endpoint
    (attachment,) = endpoint.attachments
    assert attachment.ipv4_address and endpoint.netns_path
    net.AwaitEndpoint(pb.AwaitEndpointRequest(container_id=cid))
    assert f"{attachment.ipv4_address}/{attachment.prefix_len}" in addresses_in(endpoint.netns_path)
    assert len(_bridge_ports(net_engine)) == 1
    net.AwaitEndpoint(pb.AwaitEndpointRequest(container_id=cid))  # again: at once
    net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id=cid))

    again = net.CreateEndpoint(pb.CreateEndpointRequest(
        container_id=cid, network="bridge", plumb_later=True)).endpoint
    assert again.attachments[0].ipv4_address == attachment.ipv4_address  # the first free one again
    net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id=cid))
    _wait_no_bridge_ports(net_engine)
    assert os.listdir(netns_dir(net_engine)) == []
    net.AwaitEndpoint(pb.AwaitEndpointRequest(container_id=cid))  # unknown: at once


def test_a_kill_before_plumbing_finished_is_plumbed_at_restart(fresh_network_engine):
    eng = fresh_network_engine
    net = pb_grpc.NetworkServiceStub(eng.channel("network"))
    cid = "cd" * 32
    endpoint = net.CreateEndpoint(pb.CreateEndpointRequest(
        container_id=cid, network="bridge", plumb_later=True)).endpoint
    old = eng.kill_service("network", signal.SIGKILL)
    _wait_new_pid(eng, "network", old)
    eng.wait_serving("network")
    net = pb_grpc.NetworkServiceStub(eng.channel("network"))
    net.AwaitEndpoint(pb.AwaitEndpointRequest(container_id=cid))
    address = endpoint.attachments[0]
    assert f"{address.ipv4_address}/{address.prefix_len}" in addresses_in(endpoint.netns_path)
    assert len(_bridge_ports(eng)) == 1
    net.DeleteEndpoint(pb.DeleteEndpointRequest(container_id=cid))
    _wait_no_bridge_ports(eng)
    assert os.listdir(netns_dir(eng)) == []
