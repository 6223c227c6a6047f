"""A layer blob as the tar stream it compresses, hashed as it is read.

Unpacking reads through `LayerStream`, so the uncompressed bytes are checked
against the image config's diff_id in the same pass that writes them to
disk, whatever the compression (none, gzip, zstd):

    with open(blob, "rb") as raw, LayerStream(raw) as tar_stream:
        unpack_layer(tar_stream, root)
        tar_stream.finish()   # reads the tar's trailing padding
        tar_stream.diff_id    # "sha256:..." of the uncompressed tar
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from typing import BinaryIO

import zstandard

from services.common.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerStream(io.RawIOBase):
    def __init__(self, raw: BinaryIO):
        magic = raw.read(4)
        raw.seek(0)
        self.compression = "gzip" if magic[:2] == GZIP_MAGIC else "zstd" if magic == ZSTD_MAGIC else "none"
        if self.compression == "gzip":
            self._src: BinaryIO = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
        elif self.compression == "zstd":
            self._src = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            self._src = raw
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._src.read(len(buffer))
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise InvalidArgument(f"layer is not valid {self.compression}: {exc}") from None
        self._hash.update(data)
        buffer[:len(data)] = data
        return len(data)

    def pieces(self, size: int = 1024 * 1024):
        """The uncompressed bytes as pieces of up to `size`, hashed as they are read: what
        unpacking reads (through a ForwardReader), so no piece is copied into a buffer."""
        while True:
            try:
                data = self._src.read(size)
            except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
                raise InvalidArgument(f"layer is not valid {self.compression}: {exc}") from None
            if not data:
                return
            self._hash.update(data)
            yield data

    def finish(self) -> None:
        while self.read(1024 * 1024):
            pass

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._hash.hexdigest()
