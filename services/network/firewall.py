"""The Firewaller: berth's whole nftables ruleset, rendered from state and applied at once.

berth owns one `inet` table (Config.nft_table) and never writes another. Every
change re-renders the complete table and loads it as one nftables
transaction (`table` + `flush table` + the definition), so traffic never sees
a half-built ruleset, and a crash can never leave stale rules: the next apply
replaces everything. Why each rule is there (measured on this kernel, see
the nftables-ports notes):

- prerouting/output DNAT for `fib daddr type local`: published ports from
  other hosts (prerouting) and from the host itself (output, priority -100:
  nft 1.0.6 rejects `dstnat` on the output hook).
- postrouting, per bridge: host-local traffic (127/8) is SNATed to the
  network's dedicated loopback source, not masqueraded to the gateway, which
  avoids TIME_WAIT/PAWS collisions that stall connects for 1 s; hairpin
  (container -> published port -> container) is masqueraded; egress of
  non-internal networks is masqueraded.
- forward: established first; internal networks talk only inside their bridge;
  different berth networks are isolated from each other; published ports and
  a bridge's own egress are accepted.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.common.errors import Internal


@dataclass(frozen=True)
class BridgeRules:
    bridge: str
    subnet: str
    loopback_source: str
    internal: bool = False
    subnet6: str = ""      # IPv6 networks: egress masqueraded as for IPv4
    # An overlay's bridge: frames between its endpoints (local, or tunnelled to and from other
    # nodes) skip conntrack, as in docker, whose overlay bridges sit in a namespace without
    # netfilter rules. Each node would otherwise track every segment of every flow, once on
    # the sending node and again on the receiving one (docs/cluster.md).
    untracked: bool = False
    gateway: str = ""      # the bridge's own address (with loopback_source, all it holds)


@dataclass(frozen=True)
class PortRule:
    protocol: str          # "tcp" | "udp"
    host_ip: str           # "" or "0.0.0.0" = every local address
    host_port: int
    container_ip: str
    container_port: int


@dataclass(frozen=True)
class Ruleset:
    table: str
    bridges: Sequence[BridgeRules] = ()
    ports: Sequence[PortRule] = ()
    # A cluster node's advertised address: its VXLAN datagrams (UDP 4789 from and to it) skip
    # conntrack. They are never NATed nor filtered by berth, and tracking them cost every
    # tunnelled segment and ACK a conntrack lookup on each node (docs/cluster.md).
    vxlan_local: str = ""
    vxlan_port: int = 4789


def render(rules: Ruleset) -> str:
    """The nft script that makes the table exactly `rules` (deterministic, for golden files)."""
    t = rules.table
    bridges = sorted(rules.bridges, key=lambda b: b.bridge)
    lines = [
        f"table inet {t} {{}}",
        f"flush table inet {t}",
        f"table inet {t} {{",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        "\t\tfib daddr type local jump published",
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        "\t\tfib daddr type local jump published",
        "\t}",
        "\tchain published {",
    ]
    for p in sorted(rules.ports, key=lambda p: (p.protocol, p.host_port, p.host_ip)):
        match = "" if p.host_ip in ("", "0.0.0.0") else f"ip daddr {p.host_ip} "
        lines.append(f"\t\t{match}{p.protocol} dport {p.host_port} "
                     f"dnat ip to {p.container_ip}:{p.container_port}")
    lines += [
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
    ]
    for b in bridges:
        q = f'"{b.bridge}"'
        lines.append(f"\t\toifname {q} ip saddr 127.0.0.0/8 snat ip to {b.loopback_source}")
        lines.append(f"\t\toifname {q} ip saddr {b.subnet} ct status dnat masquerade")
        if not b.internal:
            lines.append(f"\t\toifname != {q} ip saddr {b.subnet} masquerade")
            if b.subnet6:
                lines.append(f"\t\toifname != {q} ip6 saddr {b.subnet6} masquerade")
    lines += [
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        "\t\tct state established,related accept",
    ]
    # An overlay's frames, untracked by vxlan_in, match no ct state above: accepted here, at
    # once, rather than after every bridge's rules (each one an interface name loaded and
    # compared, per segment and per ACK, on both nodes).
    for b in bridges:
        if b.untracked:
            q = f'"{b.bridge}"'
            lines.append(f"\t\tct state untracked iifname {q} oifname {q} accept")
    for b in bridges:
        q = f'"{b.bridge}"'
        if b.internal:
            lines.append(f"\t\tiifname {q} oifname != {q} drop")
            lines.append(f"\t\toifname {q} iifname != {q} drop")
    for b in bridges:
        if not b.internal:
            lines.append(f'\t\toifname "{b.bridge}" ct status dnat accept')
    names = [b.bridge for b in bridges]
    for b in bridges:
        others = [n for n in names if n != b.bridge]
        if others:
            lines.append(f'\t\tiifname "{b.bridge}" oifname {{ '
                         + ", ".join(f'"{n}"' for n in others) + " } drop")
    for b in bridges:
        lines.append(f'\t\tiifname "{b.bridge}" accept')
    lines.append("\t}")
    if rules.vxlan_local:
        port = f"udp dport {rules.vxlan_port}"
        lines += [
            "\tchain vxlan_in {",
            "\t\ttype filter hook prerouting priority raw; policy accept;",
            f"\t\tip daddr {rules.vxlan_local} {port} notrack",
        ]
        # Bridged within the overlay (br_netfilter hands such frames to these hooks with the
        # bridge as their input device): to an endpoint, not to this node's own addresses on
        # the bridge (its gateway and loopback source), whose traffic (egress, published
        # ports, hairpin) conntrack must see for its NAT. Those two addresses are compared, not
        # looked up with `fib daddr type`: a route lookup per frame was a third of this
        # chain's cost (docs/cluster.md).
        for b in bridges:
            if b.untracked:
                own = ", ".join(a for a in (b.gateway, b.loopback_source) if a)
                lines.append(f'\t\tiifname "{b.bridge}" ip daddr {b.subnet} '
                             f"ip daddr != {{ {own} }} notrack")
        lines += [
            "\t}",
            "\tchain vxlan_out {",
            "\t\ttype filter hook output priority raw; policy accept;",
            f"\t\tip saddr {rules.vxlan_local} {port} notrack",
            "\t}",
        ]
    lines += ["}", ""]
    return "\n".join(lines)


class Firewaller(Protocol):
    async def apply(self, rules: Ruleset) -> None: ...


class Nft:
    """libnftables (Debian's libnftables1, what the `nft` binary itself uses), called in-process.

    A context talks to the kernel of the network namespace its calling thread
    was in when it first ran a command, so a script meant for another
    namespace (the resolver's redirect in a container's) runs in a context of
    its own, made and freed by a thread inside that namespace (`run_once`)."""

    def __init__(self, library: str = "libnftables.so.1"):
        self._lib = ctypes.CDLL(library, use_errno=True)
        self._lib.nft_ctx_new.restype = ctypes.c_void_p
        self._lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        self._lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self._lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        self._lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        self._lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        self._lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        self._lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        self._lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        self._lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

    def context(self) -> int:
        ctx = self._lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not ctx:
            raise Internal("libnftables could not make a context")
        # Messages go to buffers we read, not to the service's stdout/stderr.
        self._lib.nft_ctx_buffer_error(ctx)
        self._lib.nft_ctx_buffer_output(ctx)
        return ctx

    def run(self, ctx: int, script: str) -> tuple[bool, str, str]:
        """(ok, output, error) of one script in one transaction."""
        failed = self._lib.nft_run_cmd_from_buffer(ctx, script.encode()) != 0
        output = self._lib.nft_ctx_get_output_buffer(ctx) or b""
        error = self._lib.nft_ctx_get_error_buffer(ctx) or b""
        return not failed, output.decode(errors="replace"), error.decode(errors="replace").strip()

    def run_once(self, script: str) -> str:
        """Run a script in a fresh context in the calling thread's namespace; its output."""
        ctx = self.context()
        try:
            ok, output, error = self.run(ctx, script)
        finally:
            self._lib.nft_ctx_free(ctx)
        if not ok:
            raise Internal(f"nftables could not load a script: {error}")
        return output


class NftFirewaller:
    """Applies a rendered ruleset in one atomic libnftables transaction.

    Through the library rather than by running `nft -f -`: measured here, a
    fork+exec of nft costs ~17 ms, a transaction through the library ~0.3 ms,
    and every container start and removal applies the table. The library takes
    the same script, so the golden files stay the contract.
    """

    def __init__(self, nft: Nft | None = None):
        self.nft = nft or Nft()
        self._ctx = self.nft.context()
        self._lock = asyncio.Lock()

    async def apply(self, rules: Ruleset) -> None:
        async with self._lock:
            ok, _, error = self.nft.run(self._ctx, render(rules))
        if not ok:
            raise Internal(f"nftables could not load berth's ruleset (table inet {rules.table}): "
                           f"{error}")
