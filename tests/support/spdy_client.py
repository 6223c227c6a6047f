"""A minimal blocking SPDY/3.1 client, as Kubernetes' streaming clients use it (exec, port-forward).

    client = SpdyClient(url, "v4.channel.k8s.io")     # POST + upgrade; status 101
    err = client.open({"streamtype": "error"})
    out = client.open({"streamtype": "stdout"})
    got = client.collect({err, out})                  # bytes per stream, until each ends (FIN)
"""

from __future__ import annotations

import socket
import struct
import zlib
from urllib.parse import urlparse

from spdy.dictionary import zdict

SYN_STREAM, SYN_REPLY, RST_STREAM = 1, 2, 3
FIN = 0x01


class SpdyClient:
    def __init__(self, url: str, protocol: str, timeout: float = 30.0):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        self.sock.sendall((f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: Upgrade\r\n"
                           f"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n"
                           "Content-Length: 0\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b" ", 2)[1]) if head else 0
        self.headers = head.decode("latin-1")
        self._deflate = zlib.compressobj(zdict=zdict)
        self._inflate = zlib.decompressobj(zdict=zdict)
        self._next = 1
        self.replied: set[int] = set()

    def close(self) -> None:
        self.sock.close()

    def open(self, headers: dict[str, str], fin: bool = False) -> int:
        sid, self._next = self._next, self._next + 2
        block = struct.pack(">I", len(headers))
        for k, v in headers.items():
            block += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        block = self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        data = struct.pack(">IIH", sid, 0, 0) + block
        head = struct.pack(">HHI", 0x8003, SYN_STREAM, ((FIN if fin else 0) << 24) | len(data))
        self.sock.sendall(head + data)
        return sid

    def send(self, sid: int, data: bytes, fin: bool = False) -> None:
        self.sock.sendall(struct.pack(">II", sid, ((FIN if fin else 0) << 24) | len(data)) + data)

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("connection closed mid-frame")
            out += chunk
        return out

    def frame(self) -> tuple[bool, int, int, int, bytes]:
        """(control, type or stream id, flags, stream id of a control frame, data)."""
        word, flags_len = struct.unpack(">II", self._exact(8))
        flags, length = flags_len >> 24, flags_len & 0xFFFFFF
        data = self._exact(length) if length else b""
        if word & 0x80000000:
            kind = word & 0xFFFF
            sid = struct.unpack_from(">I", data)[0] & 0x7FFFFFFF if len(data) >= 4 else 0
            if kind == SYN_REPLY:
                self._inflate.decompress(data[4:])
                self.replied.add(sid)
            return True, kind, flags, sid, data
        return False, word & 0x7FFFFFFF, flags, word & 0x7FFFFFFF, data

    def collect(self, sids: set[int]) -> dict[int, bytes]:
        """What the server sent on each stream, once it ended every one of them."""
        got = {sid: b"" for sid in sids}
        open_ = set(sids)
        while open_:
            try:
                control, kind, flags, sid, data = self.frame()
            except (ConnectionError, OSError):
                break
            if control:
                if kind == RST_STREAM:
                    open_.discard(sid)
                continue
            if sid in got:
                got[sid] += data
                if flags & FIN:
                    open_.discard(sid)
        return got
