"""The server side of SPDY/3.1 framing, as Kubernetes' streaming clients speak it.

kubectl, crictl and critest run exec, attach and port-forward over an HTTP/1.1
connection upgraded to SPDY/3.1 (k8s.io/apimachinery httpstream/spdy). Only
what those clients use is here: the client opens streams (SYN_STREAM, with a
"streamtype" header), the server answers each with SYN_REPLY, both sides send
DATA frames and end their half with FIN. Header blocks are zlib streams with
SPDY's dictionary, one per direction for the whole connection, so every
header block (HEADERS frames too) is inflated in order. The clients do not
do SPDY flow control, so WINDOW_UPDATE and SETTINGS are read and ignored.

Frame layout (all big-endian):

    control:  1 | version (15) | type (16) | flags (8) | length (24) | data
    data:     0 | stream id (31)           | flags (8) | length (24) | data
"""

from __future__ import annotations

import asyncio
import struct
import zlib

from spdy.dictionary import zdict as HEADER_DICTIONARY

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
MAX_DATA = 32 * 1024


def encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    (count,), pos, headers = struct.unpack_from(">I", block), 4, {}
    for _ in range(count):
        (n,) = struct.unpack_from(">I", block, pos)
        name = block[pos + 4:pos + 4 + n].decode()
        pos += 4 + n
        (v,) = struct.unpack_from(">I", block, pos)
        headers[name] = block[pos + 4:pos + 4 + v].decode()
        pos += 4 + v
    return headers


class Stream:
    """One client-opened stream: what the client sends (read), what we send (write, close)."""

    def __init__(self, conn: Connection, id: int, headers: dict[str, str]):
        self.conn = conn
        self.id = id
        self.headers = headers
        self.type = headers.get("streamtype", "")
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    def _feed(self, data: bytes) -> None:
        self._incoming.put_nowait(data)

    async def read(self) -> bytes:
        """The next bytes from the client; b"" once it closed its half (or the connection went)."""
        return await self._incoming.get()

    async def write(self, data: bytes) -> None:
        if self.closed:
            return
        for i in range(0, len(data), MAX_DATA):
            self.conn.send(_data_frame(self.id, 0, data[i:i + MAX_DATA]))
        await self.conn.drain()

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(_data_frame(self.id, FLAG_FIN, b""))
            await self.conn.drain()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self._inflate = zlib.decompressobj(zdict=HEADER_DICTIONARY)
        self._deflate = zlib.compressobj(zdict=HEADER_DICTIONARY)
        self.streams: dict[int, Stream] = {}
        # New streams as the client opens them; None once the connection ended.
        self.opened: asyncio.Queue[Stream | None] = asyncio.Queue()

    def send(self, frame: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            pass

    async def serve(self) -> None:
        """Read frames until the client goes; then every stream reads EOF."""
        try:
            while True:
                head = await self.reader.readexactly(8)
                word, flags_len = struct.unpack(">II", head)
                flags, length = flags_len >> 24, flags_len & 0xFFFFFF
                data = await self.reader.readexactly(length) if length else b""
                if word & 0x80000000:
                    if not self._control(word & 0xFFFF, flags, data):
                        break
                else:
                    stream = self.streams.get(word & 0x7FFFFFFF)
                    if stream is not None:
                        if data:
                            stream._feed(data)
                        if flags & FLAG_FIN:
                            stream._feed(b"")
        except (asyncio.IncompleteReadError, ConnectionError, zlib.error, struct.error):
            pass
        finally:
            for stream in self.streams.values():
                stream._feed(b"")
            self.opened.put_nowait(None)

    def _control(self, kind: int, flags: int, data: bytes) -> bool:
        if kind == SYN_STREAM:
            sid = struct.unpack_from(">I", data)[0] & 0x7FFFFFFF
            headers = decode_headers(self._inflate.decompress(data[10:]))
            stream = Stream(self, sid, headers)
            self.streams[sid] = stream
            block = self._deflate.compress(encode_headers({})) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            self.send(_control_frame(SYN_REPLY, 0, struct.pack(">I", sid) + block))
            if flags & FLAG_FIN:
                stream._feed(b"")
            self.opened.put_nowait(stream)
        elif kind == HEADERS:
            self._inflate.decompress(data[4:])  # keeps the inflater in step; nothing to act on
        elif kind == RST_STREAM:
            stream = self.streams.get(struct.unpack_from(">I", data)[0] & 0x7FFFFFFF)
            if stream is not None:
                stream.closed = True
                stream._feed(b"")
        elif kind == PING:
            self.send(_control_frame(PING, 0, data))
        elif kind == GOAWAY:
            return False
        return True

    async def close(self) -> None:
        self.send(_control_frame(GOAWAY, 0, struct.pack(">II", 0, 0)))
        await self.drain()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, RuntimeError):
            pass


def _control_frame(kind: int, flags: int, data: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(data)) + data


def _data_frame(sid: int, flags: int, data: bytes) -> bytes:
    return struct.pack(">II", sid & 0x7FFFFFFF, (flags << 24) | len(data)) + data
