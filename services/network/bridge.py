"""Linux bridges and veth pairs through netlink (pyroute2): the kernel side of bridge networks.

One bridge per network, holding the gateway address and, as a second /32, the
network's loopback source (see firewall.py). A container's endpoint is a veth
pair: one end is a port of the bridge with hairpin on (so a container can reach
itself through a published port), the other end is eth<N> in the container's
namespace, with its address and, on its first network, the default route via
the gateway.

Everything here is idempotent where a retry can meet half-done work (a crash
between two steps): an existing bridge or address is not an error.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import ipaddress
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


@dataclass(frozen=True)
class Link:
    """An endpoint's interface inside the container."""

    ifname: str
    address: str          # "172.18.0.2"
    prefix_len: int
    gateway: str          # "" for no default route
    host_ifname: str
    mac_address: str = ""
    ipv6_address: str = ""
    ipv6_prefix_len: int = 0
    ipv6_gateway: str = ""    # "" for no IPv6 default route
    link_local_ips: tuple[str, ...] = ()
    mtu: int = 0              # 0: the kernel's default (1500); overlays need less (vxlan.py)


# An address usable at once: IPv6 duplicate address detection would leave it
# "tentative" (unusable) for about a second after the container started.
IFA_F_NODAD = 0x02


def _add_address(ipr: IPRoute, index: int, address: str, prefix_len: int) -> None:
    flags = IFA_F_NODAD if ":" in address else 0
    try:
        ipr.addr("add", index=index, address=address, prefixlen=prefix_len, flags=flags)
    except NetlinkError as exc:
        if exc.code != errno_mod.EEXIST:
            raise


def host_routes() -> list[ipaddress.IPv4Network]:
    """Destinations of the host's IPv4 routes (main table), default route excluded."""
    nets = []
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            if not dst or route["dst_len"] == 0:
                continue
            nets.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
    return nets


def routes_by_device() -> dict[str, list[ipaddress.IPv4Network]]:
    """The host's IPv4 routes grouped by output interface name (to spot overlaps)."""
    out: dict[str, list[ipaddress.IPv4Network]] = {}
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            if not dst or route["dst_len"] == 0:
                continue
            dev = names.get(route.get_attr("RTA_OIF"), "")
            out.setdefault(dev, []).append(
                ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
    return out


def ensure_bridge(name: str, addresses: list[str]) -> None:
    """Create the bridge when missing, give it `addresses` ("a.b.c.d/len"), set it up."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as exc:
                if exc.code != errno_mod.EEXIST:
                    raise
            found = ipr.link_lookup(ifname=name)
        index = found[0]
        for cidr in addresses:
            address, prefix = cidr.split("/")
            _add_address(ipr, index, address, int(prefix))
        ipr.link("set", index=index, state="up")
    # Loopback-sourced traffic DNATed to a container leaves through this bridge;
    # the kernel drops it as martian unless the bridge allows 127/8 (narrowest place).
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")


def delete_link(name: str) -> None:
    """Remove a link by name; a missing link is not an error."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            try:
                ipr.link("del", index=found[0])
            except NetlinkError as exc:
                if exc.code != errno_mod.ENODEV:
                    raise


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def endpoint_plumbed(bridge: str, host_ifname: str) -> bool:
    """The host end of an endpoint's veth is up on `bridge`: add_endpoint's last step, done only
    after the inner end got its address, state and route. A kill halfway leaves a pair
    without it (add_endpoint then replaces that pair)."""
    with IPRoute() as ipr:
        bridge_index = ipr.link_lookup(ifname=bridge)
        index = ipr.link_lookup(ifname=host_ifname)
        if not bridge_index or not index:
            return False
        (link,) = ipr.link("get", index=index[0])
        return link.get_attr("IFLA_MASTER") == bridge_index[0] and bool(link["flags"] & 1)  # IFF_UP


def add_endpoint(bridge: str, netns_path: str, link: Link) -> None:
    """A veth pair from `bridge` into the namespace, configured as `link`.

    The pair is made from inside the namespace: its inner end is born with its
    final name and gets its address, state and route in the same visit, and
    its host end is pushed out into the host's namespace. That is one thread
    hop into the namespace and no rename (measured: ~2 ms less than making the
    pair outside and moving one end in). A host end left behind by a crash has the
    same name: it is deleted when the kernel says the name is taken, and the pair made
    again (not looked for first, which would cost every attach a netlink round trip)."""
    host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)

    def inside() -> None:
        with IPRoute() as ipr:
            mac = {"address": link.mac_address} if link.mac_address else {}
            mtu = {"mtu": link.mtu} if link.mtu else {}
            ipr.link("add", ifname=link.ifname, kind="veth",
                     peer={"ifname": link.host_ifname, "net_ns_fd": host_ns, **mtu}, **mac, **mtu)
            (inner,) = ipr.link_lookup(ifname=link.ifname)
            ipr.addr("add", index=inner, address=link.address, prefixlen=link.prefix_len)
            if link.ipv6_address:
                _add_address(ipr, inner, link.ipv6_address, link.ipv6_prefix_len)
            for address in link.link_local_ips:
                _add_address(ipr, inner, address, 64 if ":" in address else 16)
            ipr.link("set", index=inner, state="up")
            if link.gateway:
                ipr.route("replace", dst="0.0.0.0/0", gateway=link.gateway, oif=inner)
            if link.ipv6_gateway:
                ipr.route("replace", dst="::/0", gateway=link.ipv6_gateway, oif=inner, family=10)

    try:
        try:
            in_netns(netns_path, inside)
        except NetlinkError as exc:
            if exc.code != errno_mod.EEXIST:
                raise
            delete_link(link.host_ifname)
            in_netns(netns_path, inside)
        with IPRoute() as ipr:
            (bridge_index,) = ipr.link_lookup(ifname=bridge)
            (index,) = ipr.link_lookup(ifname=link.host_ifname)
            ipr.link("set", index=index, master=bridge_index, state="up")
            ipr.brport("set", index=index, mode=1)  # hairpin
    except BaseException:
        delete_link(link.host_ifname)
        raise
    finally:
        os.close(host_ns)


def remove_endpoint(netns_path: str, link: Link) -> None:
    """Remove the veth pair; the namespace may already be gone (then so is the pair)."""
    delete_link(link.host_ifname)


def netns_links(netns_path: str) -> list[str]:
    """Interface names inside a namespace (for tests and reconciling)."""
    def names() -> list[str]:
        with IPRoute() as ipr:
            return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return in_netns(netns_path, names)


def in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run fn in a throwaway thread that joined the namespace (setns moves one thread only)."""
    result: list = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"cannot enter {netns_path}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=worker, name="netns-op", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def ip_forward_enabled() -> bool:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip() == "1"


def enable_ip_forward() -> None:
    _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)
