"""Tar archives between the engine and local files: save, export, load, import."""

from __future__ import annotations

import os
import sys

CHUNK = 1 << 20


def chunks(f):
    while True:
        data = f.read(CHUNK)
        if not data:
            return
        yield data


class BytesMessage:
    """A request that is only bytes field `field` holding `data` (a chunk of an archive:
    CopyToContainerRequest.chunk, LoadImagesRequest.data), serialized without protobuf.
    The transport sends its `wire_parts` as they are (one vectored write with the frame's
    header), so the data is never copied into a message."""

    __slots__ = ("field", "data")

    def __init__(self, field: int, data: bytes):
        self.field, self.data = field, data

    def wire_parts(self) -> tuple:
        """The serialized message as pieces: the field's tag and length, then the data."""
        from berth_docker.tarstream import bytes_field_head
        return bytes_field_head(self.field, len(self.data)), self.data

    def SerializeToString(self) -> bytes:
        return b"".join(self.wire_parts())


class _Spool:
    """The file a tar is written to by tar_chunks' thread: hands on CHUNK-sized pieces."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.buf = bytearray()
        self.offset = 0

    def write(self, data) -> int:
        n = len(data)
        self.offset += n
        if n >= CHUNK and isinstance(data, bytes):
            # A file's data as tarfile read it (a new object each time): handed on as it is,
            # after the headers gathered before it, not copied into the buffer.
            if self.buf:
                self.pieces.put(bytes(self.buf))
                self.buf.clear()
            self.pieces.put(data)
            return n
        self.buf += data
        if len(self.buf) >= CHUNK:
            self.pieces.put(bytes(self.buf))
            self.buf.clear()
        return n

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass


def file_tar(fd: int, arcname: str):
    """A tar of the one regular file open at `fd`, as CHUNK-sized pieces: its header, its
    data as ranges of the file (sent with sendfile by the transport, never read here), then
    the padding and the archive's end. With no tarfile and no thread: `cp` of a file, the
    common case, pays for neither. The file is sent as large as it was when opened."""
    from berth_cli.tarheaders import tar_header
    from berth_cli.transport import FileRange
    st = os.fstat(fd)
    yield tar_header(arcname, st, b"0", size=st.st_size, owner=(st.st_uid, st.st_gid))
    for offset in range(0, st.st_size, CHUNK):
        yield FileRange(fd, offset, min(CHUNK, st.st_size - offset))
    yield bytes(-st.st_size % 512 + 1024)  # the data's last block filled, the two zero blocks that end it


def tar_chunks(source: str, arcname: str):
    """A tar of `source` (a file or a tree) as pieces of about CHUNK bytes, made while they
    are sent (a thread writes it, a few pieces ahead), so nothing is spooled to disk."""
    import queue
    import tarfile
    import threading
    pieces: queue.Queue = queue.Queue(maxsize=4)
    failed: list[BaseException] = []
    done = object()

    def make() -> None:
        spool = _Spool(pieces)
        try:
            with tarfile.open(fileobj=spool, mode="w:", copybufsize=CHUNK) as tar:
                tar.add(source, arcname=arcname)
            if spool.buf:
                pieces.put(bytes(spool.buf))
        except BaseException as exc:  # raised in the sending thread below
            failed.append(exc)
        finally:
            pieces.put(done)
    threading.Thread(target=make, daemon=True).start()
    while (piece := pieces.get()) is not done:
        yield piece
    if failed:
        raise failed[0]


def prefetched(pieces, depth: int = 8):
    """The items of `pieces`, taken from it by a thread up to `depth` ahead: receiving
    the next chunks overlaps the caller's work on this one (writing a file)."""
    import queue
    import threading
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def pull() -> None:
        try:
            for piece in pieces:
                q.put(piece)
                if stop.is_set():
                    return
            q.put(end)
        except BaseException as exc:  # handed to the caller
            q.put(exc)

    threading.Thread(target=pull, daemon=True).start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not q.empty():  # let a blocked put return
            q.get_nowait()


def open_input(path: str):
    """The file to read an archive from; stdin for "" or "-" (never a terminal)."""
    if path and path != "-":
        return open(path, "rb")
    if sys.stdin.isatty():
        raise ValueError("requested load from stdin, but stdin is empty")
    return os.fdopen(os.dup(sys.stdin.fileno()), "rb")


def write_archive(output: str, open_stream) -> int:
    """A tarball from the engine to `output` (atomically) or to stdout, never to a terminal."""
    if not output and sys.stdout.isatty():
        print("berth: cowardly refusing to save to a terminal. Use the -o flag or redirect",
              file=sys.stderr)
        return 1
    stream = open_stream()
    if output:
        tmp = f"{output}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as out:
                for chunk in stream:
                    out.write(chunk.data)
            os.replace(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:
        for chunk in stream:
            sys.stdout.buffer.write(chunk.data)
        sys.stdout.buffer.flush()
    return 0
