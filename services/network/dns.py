"""The embedded DNS resolver: container names on a network, everything else forwarded.

Design: one UDP listener per bridge network, on the network's gateway address,
port 53, inside the network service's process (host namespace). Containers get
`nameserver <gateway>` in their resolv.conf. Why not docker's 127.0.0.11 in
every namespace: that needs a listener (or a DNAT rule and a socket) inside
each container's namespace, i.e. one socket per container kept alive across
service restarts; a listener per network needs one socket per network, knows
from the address a query arrived on which network asks (so networks stay
isolated: a name is answered only on the networks its container is on), and
forwards from the host's namespace, so host resolvers on loopback
(systemd-resolved's 127.0.0.53) work too. The price: the address is the
gateway, not 127.0.0.11.

Only A queries for known names are answered here (AAAA and others for known
names get an empty NOERROR answer); any other question is relayed unchanged
to the upstreams and the first answer is sent back.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

TYPE_A = 1
CLASS_IN = 1
TTL = 600
FORWARD_TIMEOUT = 3.0

# name (lowercase, no trailing dot) -> addresses, for one network
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
    """A response to `packet` with A records for `addresses` (none for other types)."""
    qid, flags = struct.unpack("!HH", packet[:4])
    rd = flags & 0x0100
    records = [a for a in addresses] if qtype == TYPE_A else []
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080, 1, len(records), 0, 0)
    out = header + packet[12:qend]
    for address in records:
        out += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4)
        out += bytes(int(x) for x in address.split("."))
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


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, lookup: Lookup):
        self.resolver = resolver
        self.lookup = lookup
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        question = parse_question(data)
        if question is None:
            return
        _qid, name, qtype, qend = question
        addresses = self.lookup(name)
        if addresses:
            self.transport.sendto(answer(data, qend, qtype, addresses), addr)
            return
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
        pass


class Resolver:
    """The listeners of all bridge networks; `serve(address, lookup)` adds one."""

    def __init__(self, upstreams: list[tuple[str, int]]):
        self.upstreams = upstreams
        self._listeners: dict[str, asyncio.DatagramTransport] = {}
        self._tasks: set[asyncio.Task] = set()

    async def serve(self, address: str, lookup: Lookup) -> None:
        if address in self._listeners:
            return
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Listener(self, lookup), local_addr=(address, 53))
        except OSError as exc:
            # Names will not resolve on this network, but its containers still run.
            log.warning("dns_listen_failed", address=address, error=str(exc))
            return
        self._listeners[address] = transport

    def stop(self, address: str) -> None:
        transport = self._listeners.pop(address, None)
        if transport is not None:
            transport.close()

    def close(self) -> None:
        for address in list(self._listeners):
            self.stop(address)
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
