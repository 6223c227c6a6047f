"""VXLAN devices and their forwarding entries through netlink (pyroute2): the kernel side of overlays.

Each overlay network has, on every node, a Linux bridge (the network's local
segment, holding the gateway address as bridge networks do) and one VXLAN
device enslaved to it, with the network's VNI, the node's advertised address
as the tunnel source, learning off and ARP proxy on. Nothing is learnt by
flooding: for every endpoint on another node, the overlay driver programs

- a forwarding entry on the VXLAN device (the container's MAC -> that node's
  address), so frames for it are tunnelled straight to its node, and the same
  MAC on the bridge's VXLAN port (the bridge then sends them there, not to
  every port);
- a permanent neighbour entry (its IP -> its MAC) on the VXLAN device, which
  the device answers ARP requests from (proxy), so no broadcast crosses nodes.

VXLAN over IPv4 costs 50 bytes (outer IP 20, UDP 8, VXLAN 8, inner Ethernet
14): over a 1500-byte underlay the overlay's MTU is 1450 (`overlay_mtu`).
"""

from __future__ import annotations

import errno as errno_mod

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50
NUD_PERMANENT = 0x80
# On a bridge port, a "permanent" entry is the bridge's own address (frames to it go up
# the host's stack); "static" (NUD_NOARP) forwards to the port and never ages.
NUD_NOARP = 0x40
NTF_SELF = 0x02
NTF_MASTER = 0x04
AF_BRIDGE = 7


def overlay_mtu(underlay_mtu: int) -> int:
    return underlay_mtu - VXLAN_OVERHEAD


def underlay_mtu(local_address: str) -> int:
    """The MTU of the interface that holds the node's advertised address (1500 when not found)."""
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=2):
            if addr.get_attr("IFA_ADDRESS") == local_address:
                link = ipr.get_links(addr["index"])[0]
                return int(link.get_attr("IFLA_MTU"))
    return 1500


def ensure_vxlan(name: str, bridge: str, vni: int, local: str, mtu: int,
                 port: int = VXLAN_PORT) -> None:
    """The VXLAN device `name` with `vni`, made when missing, a port of `bridge`, both at `mtu`."""
    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=name):
            try:
                ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=local,
                         vxlan_port=port, vxlan_learning=0, vxlan_proxy=1, mtu=mtu)
            except NetlinkError as exc:
                if exc.code != errno_mod.EEXIST:
                    raise
        (index,) = ipr.link_lookup(ifname=name)
        (bridge_index,) = ipr.link_lookup(ifname=bridge)
        ipr.link("set", index=index, master=bridge_index, mtu=mtu, state="up")
        # Frames between endpoints of one overlay meet no rule of berth's table (its rules are
        # on routed traffic, and its raw chain untracks them): this bridge asks br_netfilter for
        # nothing. (Where the namespace's
        # net.bridge.bridge-nf-call-iptables is 1, the kernel's default once br_netfilter is
        # in, the frames still go through netfilter: the bridge's option only adds to the
        # sysctl. berth leaves that host-wide sysctl to the host.)
        ipr.link("set", index=bridge_index, kind="bridge", mtu=mtu, br_nf_call_iptables=0,
                 br_nf_call_ip6tables=0, br_nf_call_arptables=0)


def add_peer(device: str, mac: str, address: str, vtep: str) -> None:
    """Forwarding and neighbour entries for an endpoint on the node at `vtep` (idempotent)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=device)
        if not found:
            return
        index = found[0]
        ipr.fdb("replace", ifindex=index, lladdr=mac, dst=vtep, state=NUD_PERMANENT, flags=NTF_SELF)
        ipr.fdb("replace", ifindex=index, lladdr=mac, state=NUD_NOARP, flags=NTF_MASTER)
        ipr.neigh("replace", ifindex=index, dst=address, lladdr=mac, state=NUD_PERMANENT)


def remove_peer(device: str, mac: str, address: str, vtep: str) -> None:
    """The entries add_peer made; entries already gone are not an error."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=device)
        if not found:
            return
        index = found[0]
        for call in (lambda: ipr.neigh("del", ifindex=index, dst=address, lladdr=mac),
                     lambda: ipr.fdb("del", ifindex=index, lladdr=mac, dst=vtep, flags=NTF_SELF),
                     lambda: ipr.fdb("del", ifindex=index, lladdr=mac, flags=NTF_MASTER)):
            try:
                call()
            except NetlinkError as exc:
                if exc.code not in (errno_mod.ENOENT, errno_mod.ENODEV, errno_mod.ESRCH):
                    raise


def peers(device: str) -> set[tuple[str, str]]:
    """(IP, MAC) of the permanent neighbour entries on a VXLAN device (for tests and reconciling)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=device)
        if not found:
            return set()
        return {(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR"))
                for n in ipr.get_neighbours(ifindex=found[0], family=2)
                if n["state"] & NUD_PERMANENT}
