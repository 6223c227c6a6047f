"""HPACK (RFC 7541), as much as a gRPC client needs: decode the server's header blocks,
encode the few request headers as plain literals.

Why not the hpack package: it imports `logging` and costs ~20 ms, in a CLI whose whole
budget is a few times that. Huffman-coded strings are rare in a gRPC server's replies
(grpcio sends its headers as plain literals); for those the hpack package's decoder is
loaded on first use.
"""

from __future__ import annotations

# RFC 7541 Appendix A; index 1 is the first entry.
STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.encode(), value.encode()) for name, value in (
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
        (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
        (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
        (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
        ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
        ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
        ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
        ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
        ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
        ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
        ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
        ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
        ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
        ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
        ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
    ))

DEFAULT_TABLE_SIZE = 4096


class HPACKError(Exception):
    """A header block that cannot be decoded: the connection is unusable (COMPRESSION_ERROR)."""


def _integer(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    mask = (1 << prefix_bits) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data):
            raise HPACKError("truncated integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 28:
            raise HPACKError("integer too large")


def _huffman_decode(data: bytes) -> bytes:
    import hpack.huffman_table  # rare: see the module docstring
    try:
        return hpack.huffman_table.decode_huffman(data)
    except Exception as exc:  # hpack's own decoding error, whatever its class
        raise HPACKError(f"bad Huffman string: {exc}") from None


class Decoder:
    """One connection's decoding context: the dynamic table persists across header blocks."""

    def __init__(self, max_size: int = DEFAULT_TABLE_SIZE):
        self._max_allowed = max_size
        self._max_size = max_size
        self._size = 0
        self._dynamic: list[tuple[bytes, bytes]] = []  # newest first

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 1 <= index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        i = index - len(STATIC_TABLE) - 1
        if 0 <= i < len(self._dynamic):
            return self._dynamic[i]
        raise HPACKError(f"header index {index} out of range")

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 32
        self._dynamic.insert(0, (name, value))
        self._size += size
        self._evict()

    def _evict(self) -> None:
        while self._size > self._max_size and self._dynamic:
            name, value = self._dynamic.pop()
            self._size -= len(name) + len(value) + 32

    def _string(self, data: bytes, pos: int) -> tuple[bytes, int]:
        if pos >= len(data):
            raise HPACKError("truncated string")
        huffman = data[pos] & 0x80
        length, pos = _integer(data, pos, 7)
        if pos + length > len(data):
            raise HPACKError("truncated string")
        raw = data[pos:pos + length]
        return (_huffman_decode(raw) if huffman else raw), pos + length

    def decode(self, data: bytes) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        pos = 0
        while pos < len(data):
            byte = data[pos]
            if byte & 0x80:  # indexed field
                index, pos = _integer(data, pos, 7)
                headers.append(self._entry(index))
                continue
            if byte & 0xE0 == 0x20:  # dynamic table size update
                size, pos = _integer(data, pos, 5)
                if size > self._max_allowed:
                    raise HPACKError(f"table size {size} above the {self._max_allowed} allowed")
                self._max_size = size
                self._evict()
                continue
            indexing = byte & 0xC0 == 0x40
            index, pos = _integer(data, pos, 6 if indexing else 4)
            if index:
                name = self._entry(index)[0]
            else:
                name, pos = self._string(data, pos)
            value, pos = self._string(data, pos)
            if indexing:
                self._add(name, value)
            headers.append((name, value))
        return headers


def _encode_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    mask = (1 << prefix_bits) - 1
    if value < mask:
        return bytes([first | value])
    out = bytearray([first | mask])
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Literal fields without indexing and without Huffman: no state shared with the server."""
    out = bytearray()
    for name, value in headers:
        out += b"\x00" + _encode_integer(len(name), 7) + name + _encode_integer(len(value), 7) + value
    return bytes(out)
