"""The resolver's answers and redirect, IPv6 and reserved addresses in pools, and the accept
rules kept in other tools' FORWARD chains (with a fake iptables)."""

from __future__ import annotations

import ipaddress
import struct
import subprocess

import pytest

from services.common.errors import InvalidArgument
from services.network import dns, ipam
from services.network.forward import HostForward
from services.network.service import NetworkService


def query(name: str, qtype: int) -> bytes:
    q = struct.pack("!HHHHHH", 42, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return q + struct.pack("!HH", qtype, 1)


def records(reply: bytes) -> list[str]:
    count = struct.unpack("!H", reply[6:8])[0]
    i = reply.index(b"\0", 12) + 5
    out = []
    for _ in range(count):
        rdlen = struct.unpack("!H", reply[i + 10:i + 12])[0]
        out.append(str(ipaddress.ip_address(reply[i + 12:i + 12 + rdlen])))
        i += 12 + rdlen
    return out


def test_answers_a_and_aaaa_from_the_same_addresses():
    addresses = ["172.18.0.2", "fd00::2"]
    for qtype, want in ((dns.TYPE_A, ["172.18.0.2"]), (dns.TYPE_AAAA, ["fd00::2"]), (15, [])):
        packet = query("web", qtype)
        qid, name, got_type, qend = dns.parse_question(packet)
        reply = dns.answer(packet, qend, got_type, addresses)
        assert (qid, name) == (42, "web")
        assert struct.unpack("!H", reply[2:4])[0] & 0x8000   # a response
        assert records(reply) == want


def test_unknown_names_are_forwarded_and_lookup_errors_answer_servfail():
    resolver = dns.Resolver([])
    assert resolver.local_answer(query("example.org", 1), lambda n: []) is None

    def broken(_name):
        raise RuntimeError("store gone")
    reply = resolver.local_answer(query("web", 1), broken)
    assert struct.unpack("!H", reply[2:4])[0] & 0xF == 2   # SERVFAIL


def test_redirect_sends_port_53_of_the_resolver_address_to_its_sockets():
    script = dns.redirect_script(40001, 40002)
    assert "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40001" in script
    assert "ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40002" in script
    assert script.startswith("table ip berth_dns {}\nflush table ip berth_dns\n")


def test_pools_keep_aux_addresses_and_gateways_out_and_take_ipv6():
    pool = ipam.Pool.make("172.28.0.0/16", "172.28.5.254", "172.28.5.0/24",
                          {"a": "172.28.5.1", "b": "172.28.1.6"})
    assert pool.first_free(set()) == "172.28.5.2"
    with pytest.raises(InvalidArgument, match="reserved"):
        pool.check_requested("172.28.5.1")
    with pytest.raises(InvalidArgument, match="not within"):
        ipam.Pool.make("172.28.0.0/16", "", "", {"x": "10.0.0.1"})
    six = ipam.Pool.make("2001:389::/64", "2001:389::ffff", "2001:389::/96", version=6)
    assert six.first_free(set()) == "2001:389::1"
    assert six.check_requested("2001:389::f00d") == "2001:389::f00d"
    with pytest.raises(InvalidArgument, match="IPv6 subnet is wanted"):
        ipam.Pool.make("10.0.0.0/24", "", "", version=6)


class FakeIptables:
    """`iptables-legacy -S/-I/-D FORWARD`, with a chain in memory."""

    def __init__(self):
        self.rules: list[str] = ["-A FORWARD -j ufw-before-forward"]
        self.calls: list[list[str]] = []

    def __call__(self, argv):
        self.calls.append(argv)
        tool, _, op, chain, *rest = argv
        if tool != "iptables-legacy" or chain != "FORWARD":
            return subprocess.CompletedProcess(argv, 1, "", "no such table")
        if op == "-S":
            return subprocess.CompletedProcess(argv, 0, "-P FORWARD DROP\n" + "\n".join(self.rules), "")
        if op == "-I":
            rest = rest[1:]   # the position
            args = " ".join(a if " " not in a else f'"{a}"' for a in rest)
            self.rules.insert(0, f"-A FORWARD {args}")
            return subprocess.CompletedProcess(argv, 0, "", "")
        if op == "-D":
            args = " ".join(a if " " not in a else f'"{a}"' for a in rest)
            if f"-A FORWARD {args}" not in self.rules:
                return subprocess.CompletedProcess(argv, 1, "", "no such rule")
            self.rules.remove(f"-A FORWARD {args}")
            return subprocess.CompletedProcess(argv, 0, "", "")
        raise AssertionError(argv)


class NoNft:
    def context(self):
        return 1

    def run(self, ctx, script):
        return False, "", "no such table"


def test_forward_rules_added_once_put_back_and_removed_with_their_bridges(monkeypatch):
    monkeypatch.setattr("services.network.forward._legacy_filter_loaded", lambda family: family == "ip")
    fake = FakeIptables()
    keeper = HostForward("bt_x", nft=NoNft(), run=fake)
    keeper.sync(["br-a", "br-b"])
    ours = [r for r in fake.rules if "berth:bt_x" in r]
    assert len(ours) == 6 and fake.rules[-1] == "-A FORWARD -j ufw-before-forward"
    assert any("-i br-a " in r and "-j ACCEPT" in r for r in ours)
    assert any("-o br-b -m conntrack --ctstate DNAT" in r for r in ours)
    writes = len([c for c in fake.calls if c[2] != "-S"])
    keeper.sync()
    assert len([c for c in fake.calls if c[2] != "-S"]) == writes   # nothing missing, nothing done
    # Another tool reloads its chain: the rules come back.
    fake.rules = ["-A FORWARD -j ufw-before-forward"]
    keeper.sync()
    assert len([r for r in fake.rules if "berth:bt_x" in r]) == 6
    # A network goes: its rules go, another engine's stay.
    fake.rules.append('-A FORWARD -i br-z -m comment --comment "berth:bt_other br-z" -j ACCEPT')
    keeper.sync(["br-b"])
    assert not [r for r in fake.rules if "br-a" in r]
    assert len([r for r in fake.rules if "berth:bt_x br-b" in r]) == 3
    assert any("bt_other" in r for r in fake.rules)


def test_resolv_conf_default_bridge_keeps_host_resolvers_user_networks_get_the_resolver(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 10.0.0.53\nsearch corp.example\noptions ndots:2 edns0\n")
    service = NetworkService(None, None, resolver=dns.Resolver([("10.0.0.53", 53)]),
                             host_resolv_conf=str(host))
    assert service._resolv_conf(on_user_network=False) == (
        "nameserver 10.0.0.53\nsearch corp.example\noptions ndots:2 edns0\n")
    assert service._resolv_conf(on_user_network=True) == (
        "nameserver 127.0.0.11\nsearch corp.example\noptions ndots:0 edns0\n")
    # Only a loopback resolver on the host (systemd-resolved): unreachable from a container.
    service.resolver = dns.Resolver([("127.0.0.53", 53)])
    assert service._resolv_conf(on_user_network=False).startswith("nameserver 127.0.0.11\n")
