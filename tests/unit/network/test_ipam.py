"""IPAM and port-spec parsing: pure rules."""

from __future__ import annotations

import ipaddress

import pytest

from berth_docker.ports import publish_flag as parse_publish
from services.common.errors import FailedPrecondition, InvalidArgument
from services.network import ipam


def test_pool_reserves_gateway_and_loopback_source():
    pool = ipam.Pool.make("10.99.0.0/29", "", "")
    assert pool.gateway == "10.99.0.1" and pool.loopback_source == "10.99.0.6"
    leased = set()
    for _ in range(4):
        leased.add(pool.first_free(leased))
    assert leased == {"10.99.0.2", "10.99.0.3", "10.99.0.4", "10.99.0.5"}
    with pytest.raises(FailedPrecondition):
        pool.first_free(leased)


def test_ip_range_and_requested_addresses():
    pool = ipam.Pool.make("10.99.0.0/24", "10.99.0.254", "10.99.0.128/25")
    assert pool.first_free(set()) == "10.99.0.129"
    assert pool.check_requested("10.99.0.7") == "10.99.0.7"
    for bad in ("10.98.0.7", "10.99.0.254", "nope"):
        with pytest.raises(InvalidArgument):
            pool.check_requested(bad)


@pytest.mark.parametrize("subnet,gateway,ip_range", [
    ("10.0.0.0/33", "", ""), ("fe80::/64", "", ""), ("10.0.0.0/30", "", ""),
    ("10.0.0.0/24", "10.0.1.1", ""), ("10.0.0.0/24", "", "10.0.1.0/25")])
def test_bad_pools(subnet, gateway, ip_range):
    with pytest.raises(InvalidArgument):
        ipam.Pool.make(subnet, gateway, ip_range)


def test_choose_subnet_skips_routes_and_networks():
    taken = [ipaddress.ip_network("172.17.0.0/16"), ipaddress.ip_network("172.18.5.0/24")]
    assert str(ipam.choose_subnet(taken)) == "172.19.0.0/16"


@pytest.mark.parametrize("spec,want", [
    ("80", ("tcp", "", 0, 80)), ("8080:80", ("tcp", "", 8080, 80)),
    ("127.0.0.1:8080:80/udp", ("udp", "127.0.0.1", 8080, 80)),
    ("127.0.0.1::80", ("tcp", "127.0.0.1", 0, 80))])
def test_parse_publish(spec, want):
    p = parse_publish(spec)
    assert (p.protocol, p.host_ip, p.host_port, p.container_port) == want


@pytest.mark.parametrize("spec", ["70000:80", "0:80", "80/sctp", "x:80", "8080:", "a.b:1:2"])
def test_parse_publish_rejects(spec):
    with pytest.raises(ValueError):
        parse_publish(spec)
