"""A connection to one process's stdio through its conmon.

conmon serves every process it monitors on a SOCK_SEQPACKET attach socket
(<socket dir>/<uuid>/attach, the uuid entry being a symlink to the process's
bundle or exec directory, which keeps the path short of the 108-byte limit):

    conmon -> client   one packet per read of the process's output; the first
                       byte says which stream: 2 stdout, 3 stderr (a terminal
                       is all stdout)
    client -> conmon   stdin bytes; ending the connection (or shutting down its
                       write side) closes the process's stdin unless conmon runs
                       with --leave-stdin-open

Resizes go to the `ctl` fifo beside the socket as "1 <rows> <cols>\\n" (1 is
conmon's window-resize message), through logfiles.send_ctl like the log's
reopen, so that two messages never share a read. Checked by experiment with
conmon 2.1.6.

A reader that does not keep up is never dropped: conmon accepts the attach
connection as a blocking socket and writes each packet whole (write_all), so it
waits, and with it the container's writes. conmon sends the last of the output
(it drains the process's pipes at exit) before it closes the socket, and closes
it before it writes the exit file: EOF here comes after the last byte.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket

import structlog

from services.common import errors
from services.container.logfiles import send_ctl

log = structlog.get_logger(__name__)

STDOUT, STDERR = 2, 3
# conmon reads stdin from the socket in buffers of this size; a larger packet
# would be cut short.
STDIN_PACKET = 8192
# conmon sends a packet per 8 KiB read of the output; read() joins what is
# already waiting into one piece of up to this much.
JOIN = 1 << 20
# A packet of at least this much is a bulk writer's: conmon reads up to 8 KiB (its
# STDIO_BUF_SIZE) and a program writing a pipe through stdio's buffer writes 4 KiB at a
# time, where a prompt or an echoed line is short.
BULK = 4096
LINGER = 0.001
HOLD = 0.02
# The socket holds only a few packets (net.unix.max_dgram_qlen, 10 by default: 80 KiB),
# so it is drained into a buffer of up to this much while read()'s caller sends what it
# got; past it the draining stops, and conmon, then the process, wait for the reader.
BUFFERED = 2 * JOIN


class Stdio:
    def __init__(self, sock: socket.socket, ctl_path: str):
        self._sock = sock
        self._ctl_path = ctl_path
        self._stdin_closed = False
        # (stream, data) packets drained from the socket, then None at its end.
        self._packets: collections.deque = collections.deque()
        self._buffered = 0
        self._arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False  # the socket is watched (not paused for back-pressure, not ended)
        self._ended = False

    @classmethod
    async def connect(cls, socket_dir: str, uuid: str, ctl_path: str) -> "Stdio":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, os.path.join(socket_dir, uuid, "attach"))
        except OSError as exc:
            sock.close()
            raise errors.FailedPrecondition(f"cannot attach: {exc.strerror}") from None
        return cls(sock, ctl_path)

    @classmethod
    async def of(cls, runtime, cid: str) -> "Stdio":
        """The stdio of container `cid`'s current task (runtime: runtime.Runtime)."""
        return await cls.connect(runtime.socket_dir, cid, os.path.join(runtime.bundle(cid).dir, "ctl"))

    def _watch(self) -> None:
        if not self._reading and not self._ended:
            self._reading = True
            self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _unwatch(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock.fileno())

    def _on_readable(self) -> None:
        """Takes every packet waiting on the socket, in one callback of the loop: a
        packet is 8 KiB, and an await (a future, two epoll_ctl) per packet would cost
        more than moving its bytes. Past BUFFERED the socket is no longer watched
        until read() makes room, so conmon waits, and with it the process."""
        recv, packets = self._sock.recv, self._packets
        got = False
        try:
            while self._buffered < BUFFERED:
                try:
                    data = recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    data = b""
                if not data:  # EOF: conmon closed the socket
                    self._unwatch()
                    self._ended = True
                    packets.append(None)
                    got = True
                    return
                if len(data) > 1:
                    packets.append((data[0], data[1:]))
                    self._buffered += len(data) - 1
                    got = True
            else:
                self._unwatch()
        finally:
            if got:
                self._arrived.set()

    async def read(self) -> tuple[int, bytes] | None:
        """The next piece of output as (stream, data); None once conmon closed the socket.

        Packets already drained are joined while they are of the same stream. When the
        process has more ready — a large packet (a bulk writer's; see BULK), or
        output already waiting when this is called (it writes faster than the caller
        sends, whatever the size of its writes: `head` writes 4 KiB at a time) — the
        socket gets a moment (LINGER, at most HOLD in all) to bring more, so a bulk
        writer travels in pieces of up to JOIN, not a message per packet, while an
        interactive one (a prompt, an echo: nothing waiting) is sent at once."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._watch()
        packets = self._packets
        backlog = bool(packets)
        while not packets:
            self._arrived.clear()
            await self._arrived.wait()
        if packets[0] is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = None
        while True:
            size, full, ended = 0, False, False
            stream = packets[0][0]
            for item in packets:
                if item is None:
                    ended = True
                    break
                if item[0] != stream:
                    ended = True  # another stream's piece follows: send this one now
                    break
                size += len(item[1])
                full = len(item[1]) >= BULK
                if size >= JOIN:
                    break
            if ended or not (full or backlog) or size >= JOIN:
                break
            now = loop.time()
            deadline = deadline or now + HOLD
            if now >= deadline:
                break
            await asyncio.sleep(LINGER)
        pieces, size = [], 0
        while packets and packets[0] is not None and packets[0][0] == stream and size < JOIN:
            data = packets.popleft()[1]
            pieces.append(data)
            size += len(data)
        self._buffered -= size
        if self._buffered < BUFFERED:
            self._watch()
        return stream, pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def write(self, data: bytes) -> None:
        if self._stdin_closed:
            return
        loop = asyncio.get_running_loop()
        try:
            for i in range(0, len(data), STDIN_PACKET):
                await loop.sock_sendall(self._sock, data[i:i + STDIN_PACKET])
        except OSError as exc:
            log.info("stdin_write_failed", error=str(exc))

    def close_stdin(self) -> None:
        """EOF for the process (when conmon runs without --leave-stdin-open)."""
        if not self._stdin_closed:
            self._stdin_closed = True
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    async def resize(self, height: int, width: int) -> None:
        await resize(self._ctl_path, height, width)

    def close(self) -> None:
        if self._loop is not None:
            self._unwatch()
            self._ended = True
        self._sock.close()


async def resize(ctl_path: str, height: int, width: int) -> None:
    if height and width and not await send_ctl(ctl_path, f"1 {height} {width}\n"):
        log.info("resize_failed", ctl=ctl_path)


async def pump_requests(requests, conn: Stdio, want_stdin: bool) -> None:
    """Feeds stdin, resizes and close_stdin from a request stream into `conn`.

    When the caller's stream ends without close_stdin it detached: stdin is left
    alone so that conmon's --leave-stdin-open (or not) decides."""
    async for req in requests:
        kind = req.WhichOneof("msg")
        if kind == "stdin" and want_stdin:
            await conn.write(req.stdin)
        elif kind == "resize":
            await conn.resize(req.resize.height, req.resize.width)
        elif kind == "close_stdin" and want_stdin:
            conn.close_stdin()
