"""Tar archives that arrive as a stream of pieces (cp's and load's), read without copying.

tarfile's own stream mode ("r|") copies every block several times through its buffer.
Members extracted in order only ever seek forward, so a file over the pieces that reads on
for a forward seek lets tarfile use its ordinary mode ("r:"), and `readpiece` hands a
member's data on as the pieces it came in, not joined or re-sliced into new buffers.
"""

from __future__ import annotations

import io
import os


class ForwardReader:
    """A file over an iterator of bytes-like pieces that tarfile reads as a seekable one.
    A backward seek fails."""

    def __init__(self, pieces):
        self._pieces = iter(pieces)
        self._piece: bytes | memoryview = b""
        self._at = 0  # in _piece
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self._pos
        elif whence != 0:
            raise io.UnsupportedOperation("a stream is not seekable from its end")
        if offset < self._pos:
            raise io.UnsupportedOperation("a stream cannot seek backwards")
        while offset > self._pos and self._more():
            step = min(offset - self._pos, len(self._piece) - self._at)
            self._at += step
            self._pos += step
        return self._pos

    def _more(self) -> bool:
        while self._at >= len(self._piece):
            piece = next(self._pieces, None)
            if piece is None:
                return False
            self._piece, self._at = piece, 0
        return True

    def drain(self) -> None:
        """Reads on to the end of the pieces (what follows an archive's end blocks)."""
        for _ in self._pieces:
            pass
        self._piece, self._at = b"", 0

    def rest(self):
        """The pieces not read yet: what is left of the current one, then the others."""
        if self._at < len(self._piece):
            yield memoryview(self._piece)[self._at:]
        self._piece, self._at = b"", 0
        yield from self._pieces

    def readpiece(self, n: int) -> bytes | memoryview:
        """At most `n` bytes from the current piece, as a view of it (empty at the end)."""
        if n <= 0 or not self._more():
            return b""
        piece, at = self._piece, self._at
        take = min(n, len(piece) - at)
        self._at += take
        self._pos += take
        return piece if at == 0 and take == len(piece) else memoryview(piece)[at:at + take]

    def read(self, n: int = -1) -> bytes:
        out = []
        while n != 0 and (piece := self.readpiece(n if n > 0 else 1 << 62)):
            out.append(piece)
            if n > 0:
                n -= len(piece)
        if len(out) == 1 and isinstance(out[0], bytes):
            return out[0]  # a whole piece is handed on as it is, not copied
        return b"".join(out)


def member_pieces(src: ForwardReader, offset: int, size: int):
    """The `size` bytes at `offset` of the stream (a member's data), as views of the pieces
    they arrived in; an archive that ends before them is an EOFError."""
    src.seek(offset)
    left = size
    while left:
        piece = src.readpiece(left)
        if not piece:
            raise EOFError("the archive ends inside a member's data")
        left -= len(piece)
        yield piece


def write_member(src: ForwardReader, offset: int, size: int, fd: int) -> None:
    """Writes a member's data (member_pieces) to `fd`."""
    for piece in member_pieces(src, offset, size):
        view = memoryview(piece)
        while view:
            view = view[os.write(fd, view):]


def bytes_field(raw, field: int) -> memoryview | None:
    """The payload of a serialized protobuf message that is exactly one bytes field `field`
    (an archive's chunk: CopyFromContainerResponse.data, ...), as a view of `raw`; None for
    any other message. Parsing it as a message would copy the payload in, reading the field
    would copy it out again."""
    if len(raw) < 2 or raw[0] != (field << 3) | 2:
        return None
    n, shift, at = 0, 0, 1
    while at < len(raw) and at < 11:
        byte = raw[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return memoryview(raw)[at:] if at + n == len(raw) else None
    return None


def bytes_field_head(field: int, n: int) -> bytes:
    """What precedes the `n` bytes of bytes field `field` in a serialized protobuf message:
    its tag and its length (varints)."""
    head = bytearray(((field << 3) | 2,))
    while n > 0x7F:
        head.append((n & 0x7F) | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head)


def bytes_field_message(field: int, *parts) -> bytes:
    """The serialized protobuf message that is just bytes field `field` holding `parts`
    joined (an archive's chunk), made with one copy of the data rather than a message's two."""
    return b"".join((bytes_field_head(field, sum(len(p) for p in parts)), *parts))
