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


class _Spool:
    """The file a tar is written to by tar_chunks' thread: hands on CHUNK-sized pieces."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.buf = bytearray()
        self.offset = 0

    def write(self, data) -> int:
        self.buf += data
        self.offset += len(data)
        if len(self.buf) >= CHUNK:
            self.pieces.put(bytes(self.buf))
            self.buf.clear()
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass


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


class ForwardReader:
    """A file over an iterator of bytes that tarfile reads as a seekable one: extracting
    members in order, it only ever seeks forward, which is reading on. (tarfile's own
    stream mode would copy every block three times more.) A backward seek fails."""

    def __init__(self, pieces):
        self._pieces = iter(pieces)
        self._piece = b""
        self._at = 0  # in _piece
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        import io
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

    def read(self, n: int = -1) -> bytes:
        out = []
        while (n < 0 or n > 0) and self._more():
            piece, at = self._piece, self._at
            take = len(piece) - at if n < 0 else min(n, len(piece) - at)
            # A whole piece is handed on as it is, not copied.
            out.append(piece if at == 0 and take == len(piece) else piece[at:at + take])
            self._at += take
            self._pos += take
            if n > 0:
                n -= take
        return out[0] if len(out) == 1 else b"".join(out)


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
