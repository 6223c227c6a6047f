"""The embedded DNS resolver: container names, aliases and links, everything else forwarded.

As docker's: every container on a bridge network reaches the resolver at
127.0.0.11 port 53 in its own namespace, over UDP and TCP. The service opens
one UDP and one TCP socket per container namespace, bound to 127.0.0.11 on a
port the kernel picks (a socket made by a thread that joined the namespace
stays in it), and a small nftables table in that namespace redirects
127.0.0.11:53 to those ports. Why not bind port 53 itself: a container that
runs its own DNS server on 0.0.0.0:53 could then not bind it (docker redirects
for the same reason). The sockets live in this process, so a query is known
to come from one container: it is answered from every network that container
is on, with its aliases and the links it asked for, and a name is never
answered on a network its container is not on. Unknown names are relayed from
the host's namespace (so host resolvers on loopback, such as
systemd-resolved's 127.0.0.53, work), the same way the query came: UDP over
UDP, TCP over TCP (a truncated UDP answer makes the client ask again over TCP).

A and AAAA queries for known names are answered here (other types for known
names get an empty NOERROR answer); any other question is relayed unchanged
to the upstreams and the first answer is sent back.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

ADDRESS = "127.0.0.11"
TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
TTL = 600
FORWARD_TIMEOUT = 3.0
TCP_IDLE = 10.0
# The nftables table berth keeps inside each container namespace.
NAT_TABLE = "berth_dns"

# name (lowercase, no trailing dot) -> addresses (IPv4 and IPv6), for one container
Lookup = Callable[[str], list[str]]


def parse_question(packet: bytes) -> tuple[int, str, int, int] | None:
    """(id, qname, qtype, end offset of the question) of a standard query, or None."""
    if len(packet) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(packet):
            return None
        n = packet[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0:
            return None
        labels.append(packet[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(packet):
        return None
    qtype, _qclass = struct.unpack("!HH", packet[i:i + 4])
    return qid, ".".join(labels).lower(), qtype, i + 4


def answer(packet: bytes, qend: int, qtype: int, addresses: list[str]) -> bytes:
    """A response to `packet` with A or AAAA records for `addresses` (none for other types)."""
    qid, flags = struct.unpack("!HH", packet[:4])
    rd = flags & 0x0100
    ips = [ipaddress.ip_address(a) for a in addresses]
    version = {TYPE_A: 4, TYPE_AAAA: 6}.get(qtype)
    records = [ip for ip in ips if ip.version == version]
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080, 1, len(records), 0, 0)
    out = header + packet[12:qend]
    for ip in records:
        out += struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, TTL, len(ip.packed)) + ip.packed
    return out


def servfail(packet: bytes) -> bytes:
    qid, flags = struct.unpack("!HH", packet[:4])
    return struct.pack("!HH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | 2) + packet[4:6] + b"\0" * 6 + \
        (packet[12:] if len(packet) > 12 else b"")


def parse_upstreams(text: str, resolv_conf: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """"ip[:port],..." or, when empty, the nameservers of the host's resolv.conf."""
    if text:
        out = []
        for item in text.split(","):
            host, _, port = item.strip().partition(":")
            if host:
                out.append((host, int(port or 53)))
        return out
    out = []
    try:
        with open(resolv_conf) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
                    out.append((parts[1], 53))
    except OSError:
        pass
    return out


def redirect_script(udp_port: int, tcp_port: int) -> str:
    """The table inside a container namespace that sends 127.0.0.11:53 to the resolver's ports
    (replies are translated back by conntrack)."""
    return "\n".join([
        f"table ip {NAT_TABLE} {{}}",
        f"flush table ip {NAT_TABLE}",
        f"table ip {NAT_TABLE} {{",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        f"\t\tip daddr {ADDRESS} udp dport 53 dnat to {ADDRESS}:{udp_port}",
        f"\t\tip daddr {ADDRESS} tcp dport 53 dnat to {ADDRESS}:{tcp_port}",
        "\t}",
        "}",
        ""])


def open_sockets() -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on 127.0.0.11 in the calling thread's namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((ADDRESS, 0))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((ADDRESS, 0))
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, lookup: Lookup):
        self.resolver = resolver
        self.lookup = lookup
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        local = self.resolver.local_answer(data, self.lookup)
        if local is not None:
            self.transport.sendto(local, addr)
        elif parse_question(data) is not None:
            self.resolver.spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr) -> None:
        reply = await self.resolver.forward(data)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply or servfail(data), addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self, future: asyncio.Future):
        self.future = future

    def datagram_received(self, data, addr):
        if not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc):
        # ICMP port unreachable: this upstream refuses, ask the next one now rather than time out.
        if not self.future.done():
            self.future.set_exception(exc)


class _Served:
    """One container namespace's listeners."""

    def __init__(self, udp: asyncio.DatagramTransport, tcp: asyncio.AbstractServer, ports: tuple[int, int]):
        self.udp = udp
        self.tcp = tcp
        self.ports = ports

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


class Resolver:
    """The listeners of all container namespaces; `serve(key, netns_path, lookup)` adds one.

    `in_netns(path, fn)` runs fn in a thread inside a namespace, and
    `apply_nat(script)` loads an nftables script in the calling thread's
    namespace; both come from the kernel side of the service."""

    def __init__(self, upstreams: list[tuple[str, int]], in_netns=None, apply_nat=None):
        self.upstreams = upstreams
        self._in_netns = in_netns
        self._apply_nat = apply_nat
        self._served: dict[str, _Served] = {}
        self._tasks: set[asyncio.Task] = set()

    def serving(self, key: str) -> bool:
        return key in self._served

    async def serve(self, key: str, netns_path: str, lookup: Lookup) -> None:
        """Listen at 127.0.0.11 in the namespace (once per key); a failure is logged: names will
        not resolve there, but the container still runs."""
        if key in self._served or self._in_netns is None:
            return

        def inside():
            udp, tcp = open_sockets()
            try:
                self._apply_nat(redirect_script(udp.getsockname()[1], tcp.getsockname()[1]))
            except BaseException:
                udp.close()
                tcp.close()
                raise
            return udp, tcp

        try:
            udp, tcp = await asyncio.to_thread(self._in_netns, netns_path, inside)
        except Exception as exc:  # noqa: BLE001 - logged, the container runs without names
            log.warning("dns_listen_failed", key=key, netns_path=netns_path, error=str(exc))
            return
        loop = asyncio.get_running_loop()
        ports = (udp.getsockname()[1], tcp.getsockname()[1])
        transport, _ = await loop.create_datagram_endpoint(lambda: _Listener(self, lookup), sock=udp)
        server = await asyncio.start_server(
            lambda r, w: self._serve_tcp(r, w, lookup), sock=tcp)
        if key in self._served:   # served meanwhile by a concurrent call
            transport.close()
            server.close()
            return
        self._served[key] = _Served(transport, server, ports)

    def stop(self, key: str) -> None:
        served = self._served.pop(key, None)
        if served is not None:
            served.close()

    def close(self) -> None:
        for key in list(self._served):
            self.stop(key)
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def local_answer(self, data: bytes, lookup: Lookup) -> bytes | None:
        """The answer for a name berth knows, or None (then it is forwarded)."""
        question = parse_question(data)
        if question is None:
            return None
        _qid, name, qtype, qend = question
        try:
            addresses = lookup(name)
        except Exception as exc:  # noqa: BLE001 - a lookup error must not kill the listener
            log.warning("dns_lookup_failed", name=name, error=str(exc))
            return servfail(data)
        return answer(data, qend, qtype, addresses) if addresses else None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         lookup: Lookup) -> None:
        try:
            while True:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE))[0]
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                reply = self.local_answer(data, lookup)
                if reply is None:
                    reply = await self.forward_tcp(data) or servfail(data)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, struct.error):
            pass
        finally:
            writer.close()

    async def forward(self, data: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        for host, port in self.upstreams:
            future = loop.create_future()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Client(future), remote_addr=(host, port))
            except OSError:
                continue
            try:
                transport.sendto(data)
                return await asyncio.wait_for(future, FORWARD_TIMEOUT)
            except (TimeoutError, OSError):
                continue
            finally:
                transport.close()
        return None

    async def forward_tcp(self, data: bytes) -> bytes | None:
        for host, port in self.upstreams:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                        FORWARD_TIMEOUT)
            except (TimeoutError, OSError):
                continue
            try:
                writer.write(struct.pack("!H", len(data)) + data)
                await writer.drain()
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2),
                                                                  FORWARD_TIMEOUT))[0]
                return await asyncio.wait_for(reader.readexactly(size), FORWARD_TIMEOUT)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                continue
            finally:
                writer.close()
        return None
