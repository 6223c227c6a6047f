"""The nftables ruleset rendered for a matrix of configs, compared with golden files.

Regenerate after an intended change: BERTH_UPDATE_GOLDEN=1 pytest tests/unit/network
"""

from __future__ import annotations

import os

import pytest

from services.network.firewall import BridgeRules, PortRule, Ruleset, render

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
DEFAULT = BridgeRules("berth0", "172.17.0.0/16", "172.17.255.254")
USER = BridgeRules("br-0123456789ab", "172.18.0.0/16", "172.18.255.254")
INTERNAL = BridgeRules("br-internal0", "10.99.0.0/24", "10.99.0.254", internal=True)

CASES = {
    "empty": Ruleset("berth"),
    "default_bridge": Ruleset("berth", [DEFAULT]),
    "published_tcp_udp_hostip": Ruleset("berth", [DEFAULT], [
        PortRule("tcp", "", 8080, "172.17.0.2", 80),
        PortRule("udp", "0.0.0.0", 5353, "172.17.0.2", 53),
        PortRule("tcp", "127.0.0.1", 8443, "172.17.0.3", 443)]),
    "isolated_and_internal": Ruleset("bt_test", [DEFAULT, USER, INTERNAL], [
        PortRule("tcp", "", 18080, "172.18.0.2", 80)]),
    "ipv6_egress": Ruleset("berth", [BridgeRules("br-v6", "172.19.0.0/16", "172.19.255.254",
                                                 subnet6="fd00:1::/64")]),
    "cluster_node": Ruleset("berth", [DEFAULT, BridgeRules("bo-0123456789ab", "10.213.7.0/24",
                                                           "10.213.7.254", untracked=True,
                                                           gateway="10.213.7.1")],
                            vxlan_local="10.224.3.11"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ruleset_matches_golden(name):
    text = render(CASES[name])
    path = os.path.join(GOLDEN, f"{name}.nft")
    if os.environ.get("BERTH_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read()


def test_render_is_order_independent():
    a = Ruleset("berth", [DEFAULT, USER], [PortRule("tcp", "", 1, "172.17.0.2", 1),
                                           PortRule("tcp", "", 2, "172.17.0.3", 2)])
    b = Ruleset("berth", [USER, DEFAULT], list(reversed(a.ports)))
    assert render(a) == render(b)


def test_ruleset_is_one_transaction_on_its_own_table_only():
    text = render(CASES["isolated_and_internal"])
    assert text.startswith("table inet bt_test {}\nflush table inet bt_test\n")
    tables = {line.split()[2] for line in text.splitlines() if line.startswith("table ")}
    assert tables == {"bt_test"}
