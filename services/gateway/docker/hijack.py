"""Hijacked connections (attach): the socket taken over from aiohttp after a `101 UPGRADED`.

Why a takeover and not aiohttp's request stream (measured, see
/work/shared/notes/docker-api-hijack.md): aiohttp's RequestHandler closes the whole
transport when the client half-closes, and the docker CLI half-closes at once when
it sends no stdin, so output written after that would be lost. Our own protocol
keeps the write side open on EOF (`eof_received` returns True), and the session ends
when we close the transport after the last output byte.

    session = await Hijacked.upgrade(request, content_type)
    data = await session.read_stdin()        # None once the client half-closed
    await session.write(frame(1, b"hi\n"))
    await session.close()
    return session.response
"""

from __future__ import annotations

import asyncio
import struct

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
# Stop feeding output when this much is waiting to reach a slow client.
HIGH_WATER = 1 << 20

STDOUT, STDERR = 1, 2


_HEADER = struct.Struct(">BxxxI")


def frame(stream: int, data: bytes) -> bytes:
    """Docker's stdcopy framing: stream byte, three zero bytes, big-endian length, payload."""
    return _HEADER.pack(stream, len(data)) + data


def line_frames(stream: int, data: bytes) -> bytes:
    """`data` framed a line per frame, as docker sends a log: one frame per message it
    logged. Clients see the boundaries (docker-py's streamed logs yield one item per
    frame), so a block of many lines must not go out as one frame."""
    lines = data.split(b"\n")
    rest = lines.pop()
    pack = _HEADER.pack
    out = b"".join([pack(stream, len(line) + 1) + line + b"\n" for line in lines])
    return out + frame(stream, rest) if rest else out


def stream_content_type(api_version: tuple[int, int], tty: bool) -> str:
    # moby says "multiplexed" only for framed output asked for at API >= 1.42.
    return MULTIPLEXED_STREAM if not tty and api_version >= (1, 42) else RAW_STREAM


class _Protocol(asyncio.Protocol):
    """Owns the transport after the upgrade; forwards loss to aiohttp's handler for its bookkeeping."""

    def __init__(self, original: asyncio.BaseProtocol, transport: asyncio.Transport):
        self._original = original
        self._transport = transport
        self.closed = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        # What the client sent (stdin), then None at its half-close.
        self.stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0
        self._reading_paused = False
        self.stdin_closed = False

    def data_received(self, data: bytes) -> None:
        self.stdin.put_nowait(data)
        self._queued += len(data)
        if self._queued > HIGH_WATER and not self._reading_paused:
            # The process reads slower than the client writes: let TCP/unix backpressure work.
            self._reading_paused = True
            self._transport.pause_reading()

    def consumed(self, n: int) -> None:
        self._queued -= n
        if self._reading_paused and self._queued <= HIGH_WATER // 2:
            self._reading_paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()

    def eof_received(self) -> bool:
        self.stdin_closed = True
        self.stdin.put_nowait(None)
        return True  # keep our write side open: output still has to go out

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        if not self.stdin_closed:
            self.stdin_closed = True
            self.stdin.put_nowait(None)
        if not self.closed.done():
            self.closed.set_result(exc)
        self._original.connection_lost(exc)

    async def drain(self) -> None:
        await self._writable.wait()


class Hijacked:
    def __init__(self, request: web.Request, response: web.StreamResponse, protocol: _Protocol):
        self._transport = request.transport
        self.response = response
        self._protocol = protocol

    @classmethod
    async def upgrade(cls, request: web.Request, content_type: str) -> Hijacked:
        """Answer `101 UPGRADED` (or moby's close-delimited 200 without an Upgrade header)
        and take the socket over."""
        upgrade = "upgrade" in request.headers
        if upgrade:
            response = web.StreamResponse(status=101, reason="UPGRADED", headers={
                "Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"})
        else:
            response = _CloseDelimited(status=200, headers={"Content-Type": RAW_STREAM})
        response.force_close()
        transport = request.transport
        protocol = _Protocol(request.protocol, transport)
        # Swap before prepare() so not a byte the client sends after the head reaches aiohttp's parser.
        transport.set_protocol(protocol)
        await response.prepare(request)
        return cls(request, response, protocol)

    @property
    def gone(self) -> bool:
        return self._protocol.closed.done() or self._transport.is_closing()

    def wait_closed(self) -> asyncio.Future:
        return self._protocol.closed

    async def read_stdin(self) -> bytes | None:
        """The next bytes the client sent; None once it half-closed (or went away)."""
        data = await self._protocol.stdin.get()
        if data is None:
            self._protocol.stdin.put_nowait(None)  # every later read sees the end too
            return None
        self._protocol.consumed(len(data))
        return data

    async def write(self, data: bytes) -> None:
        if self.gone:
            raise ConnectionResetError("attach client went away")
        self._transport.write(data)
        if self._transport.get_write_buffer_size() > HIGH_WATER:
            await self._protocol.drain()

    async def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()


class _CloseDelimited(web.StreamResponse):
    """moby's pre-upgrade attach answer: no chunking, the body ends when the socket closes.

    `_length_check` is aiohttp's private switch (the one WebSocketResponse uses) that
    stops it from chunking a response of unknown length.
    """

    _length_check = False
