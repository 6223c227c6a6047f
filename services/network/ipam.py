"""IP address management for bridge networks: pure functions, no kernel, no store.

A network's pool is its subnet (or --ip-range inside it) minus the network
and broadcast addresses, the gateway, the auxiliary addresses the user
reserved, and (IPv4) the loopback source (the last usable address, which the
firewall uses as the source of host-local traffic). An IPv6 pool works the
same way, without a loopback source. Leases
live in the store, where a UNIQUE(network, address) constraint makes sure an
address is never handed out twice, also across restarts.

    >>> pool = Pool.make("10.99.0.0/24", "", "")
    >>> pool.gateway, pool.loopback_source
    ('10.99.0.1', '10.99.0.254')
    >>> pool.first_free({"10.99.0.2"})
    '10.99.0.3'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, InvalidArgument

# Where an unset subnet is taken from, in order (docker's default pools).
DEFAULT_POOLS = tuple(ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)) + tuple(
    ipaddress.ip_network(f"192.168.{n}.0/20") for n in range(0, 256, 16))


@dataclass(frozen=True)
class Pool:
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str
    ip_range: ipaddress.IPv4Network | ipaddress.IPv6Network
    loopback_source: str
    aux: frozenset[str] = frozenset()

    @classmethod
    def make(cls, subnet: str, gateway: str, ip_range: str, aux: dict[str, str] | None = None,
             version: int = 4) -> Pool:
        net = parse_subnet(subnet, version)
        if net.prefixlen > (29 if version == 4 else 125):
            raise InvalidArgument(f"subnet {subnet} is too small: want /{29 if version == 4 else 125} "
                                  "or larger")
        hosts_first = net.network_address + 1
        last = net.broadcast_address - 1
        if gateway:
            try:
                gw = ipaddress.ip_address(gateway)
            except ValueError:
                raise InvalidArgument(f"invalid gateway address {gateway!r}") from None
            if gw not in net or gw in (net.network_address, net.broadcast_address):
                raise InvalidArgument(f"no matching subnet for gateway {gateway}")
        else:
            gw = hosts_first
        loopback = (last if last != gw else last - 1) if version == 4 else ""
        if ip_range:
            rng = parse_subnet(ip_range, version)
            if not rng.subnet_of(net):
                raise InvalidArgument(f"ip-range {ip_range} is not within subnet {subnet}")
        else:
            rng = net
        reserved = set()
        for key, value in (aux or {}).items():
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                raise InvalidArgument(f"invalid auxiliary address {key}={value!r}") from None
            if ip not in net:
                raise InvalidArgument(f"auxiliary address {key}={value} is not within subnet {subnet}")
            reserved.add(str(ip))
        return cls(subnet=net, gateway=str(gw), ip_range=rng, loopback_source=str(loopback),
                   aux=frozenset(reserved))

    def reserved(self) -> set[str]:
        return {str(self.subnet.network_address), str(self.subnet.broadcast_address),
                self.gateway, self.loopback_source, *self.aux} - {""}

    def check_requested(self, address: str) -> str:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise InvalidArgument(f"invalid IPv{self.subnet.version} address: {address!r}") from None
        if ip not in self.subnet:
            raise InvalidArgument(
                f"invalid address {address}: it does not belong to any of this network's "
                f"subnets ({self.subnet})")
        if str(ip) in self.reserved():
            raise InvalidArgument(f"address {address} is reserved in network {self.subnet}")
        return str(ip)

    def first_free(self, leased: Iterable[str]) -> str:
        taken = set(leased) | self.reserved()
        for ip in self.ip_range.hosts() if self.ip_range.prefixlen < 31 else self.ip_range:
            if ip in self.subnet and str(ip) not in taken:
                return str(ip)
        raise FailedPrecondition(f"no available IPv{self.subnet.version} addresses on this network's "
                                 f"address pools ({self.ip_range})")


def parse_subnet(text: str, version: int = 4) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {text!r}: want a.b.c.d/len or an IPv6 prefix/len") from None
    if net.version != version:
        raise InvalidArgument(f"invalid subnet {text}: an IPv{version} subnet is wanted here")
    if str(net) != text and "/" in text and ipaddress.ip_interface(text).ip != net.network_address:
        raise InvalidArgument(f"invalid subnet {text}: did you mean {net}?")
    return net


def overlapping(net: ipaddress.IPv4Network, others: Iterable[ipaddress.IPv4Network]):
    return next((o for o in others if net.overlaps(o)), None)


def choose_subnet(taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first default pool that overlaps no host route and no other network."""
    taken = list(taken)
    for net in DEFAULT_POOLS:
        if overlapping(net, taken) is None:
            return net
    raise FailedPrecondition("could not find an available, non-overlapping IPv4 address pool "
                             "among the defaults to assign to the network")
