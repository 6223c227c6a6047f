"""Reading a container's output back from its k8s-file logs, in bulk.

Each record conmon writes is `<RFC3339Nano time> <stdout|stderr> <P|F> <content>\\n`:
F ends a line of the container's output (its content holds the line's newline,
which is the record's), P is a piece without a newline (output not ended by
one, or a line longer than conmon's 8 KiB read) to be joined with what follows
on that stream. conmon 2.1 always writes the time as 35 bytes
(`2026-01-02T03:04:05.123456789+00:00`), so the content starts at byte 45 and
a record is taken apart by slicing; anything else goes the slow way.

The files are read in 1 MiB blocks, split into records with one bytes.split.
Bulk (chunked) output joins the contents of consecutive records of one stream,
so the bytes of each stream come back exactly as written. A time filter is
applied line by line only in blocks whose first or last record is outside it
(records are in time order: conmon stamps them as it writes). `tail` is found
by reading backwards from the end of the newest file, then older files, so it
reads about what it returns.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from operator import itemgetter

from services.container import logfiles
from services.container.model import LogLine

# Follow re-reads the file this often while the container runs; its end is
# signalled at once by the exit watcher.
FOLLOW_INTERVAL = 0.05
BLOCK = 1 << 20
# Bulk entries end at a stream change or at about this size.
CHUNK = 1 << 20
_TS = 35
_HEADER = _TS + 10  # time, " stdout ", tag, " "
STDOUT, STDERR = "stdout", "stderr"


@dataclass(frozen=True)
class LogFilter:
    tail: int = -1
    since_ns: int = 0
    until_ns: int = 0
    streams: frozenset[str] = frozenset({STDOUT, STDERR})

    @property
    def timed(self) -> bool:
        return bool(self.since_ns or self.until_ns)

    def in_time(self, t: int) -> bool:
        return (not self.since_ns or t >= self.since_ns) and (not self.until_ns or t < self.until_ns)


def parse_time(text: bytes) -> int:
    """Nanoseconds since the epoch of an RFC3339Nano timestamp as conmon writes it."""
    s = text.decode()
    main, _, rest = s.partition(".")
    frac, zone = rest, ""
    for i, ch in enumerate(rest):
        if not ch.isdigit():
            frac, zone = rest[:i], rest[i:]
            break
    if not rest:
        main, zone = s[:19], s[19:]
    if zone in ("Z", ""):
        zone = "+00:00"
    whole = datetime.fromisoformat(main + zone)
    return int(whole.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def fields(r: bytes) -> tuple[bytes, str, bool, bytes] | None:
    """(time, stream, partial, content) of one record (without its newline);
    None for what is not a record."""
    if len(r) >= _HEADER - 1 and r[_TS] == 32 and r[_TS + 7] == 32 and r[_TS + 9:_TS + 10] in (b" ", b""):
        name = r[_TS + 1:_TS + 7]
        tag = r[_TS + 8]
        if name in (b"stdout", b"stderr") and tag in (70, 80):
            return r[:_TS], name.decode(), tag == 80, r[_HEADER:]
    parts = r.split(b" ", 3)
    if len(parts) == 3:
        parts.append(b"")
    if len(parts) != 4 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"P", b"F"):
        return None
    return parts[0], parts[1].decode(), parts[2] == b"P", parts[3]


_SECONDS: dict[bytes, int] = {}


def _time(ts: bytes) -> int | None:
    # conmon's form: the second (date, time and zone) is parsed once per second.
    if len(ts) == _TS and ts[19] == 46 and ts[20:29].isdigit():
        key = ts[:19] + ts[29:]
        sec = _SECONDS.get(key)
        if sec is None:
            try:
                sec = parse_time(key[:19] + b".0" + key[19:]) // 1_000_000_000
            except ValueError:
                return None
            if len(_SECONDS) > 4096:
                _SECONDS.clear()
            _SECONDS[key] = sec
        return sec * 1_000_000_000 + int(ts[20:29])
    try:
        return parse_time(ts)
    except ValueError:
        return None


class Decoder:
    """Records -> output, in file order. Per stream it keeps the line in progress
    (joined P pieces): its start time decides whether the whole line is admitted.

    Bulk mode yields LogLine entries of many lines (stamped with their first
    line's time); line mode one per line, stamped with its first piece's time."""

    def __init__(self, flt: LogFilter, chunked: bool):
        self.flt = flt
        self.chunked = chunked
        # stream -> (start time, or its text while not needed yet; admitted;
        # the line so far, line mode only)
        self._open: dict[str, tuple[int | bytes, bool, bytearray]] = {}
        self._buf: list[bytes] = []
        self._buf_stream = ""
        self._buf_time = 0
        self._buf_len = 0
        # After a seek: stream -> (files, index, offset) to look back from for
        # whether it has a line in progress there (see _seek).
        self.pending: dict[str, tuple[list, int, int]] = {}
        # Past --until with no admitted line in progress: nothing more is admitted.
        self.ended = False

    def resolve(self, streams: set[str]) -> None:
        for stream in streams & self.pending.keys():
            files, i, off = self.pending.pop(stream)
            if open_at(files, i, off, stream):
                self._open[stream] = (0, False, bytearray())

    def past_until(self, records: list[bytes]) -> bool:
        """Whether nothing after this block can be admitted: its last record is at or
        after --until and no admitted line is in progress."""
        if self.ended:
            return True
        if not self.flt.until_ns or not records or any(a for _, a, _ in self._open.values()):
            return False
        f = fields(records[-1])
        t = _time(f[0]) if f else None
        return t is not None and t >= self.flt.until_ns

    def feed(self, records: list[bytes]) -> list[LogLine]:
        """Entries of a block of records. A block that passes --until is cut where it
        does (found by bisection): what is before goes the way of a block in time, what
        is after is looked at only for the lines then in progress."""
        if self.ended:
            return []
        if self.flt.until_ns and len(records) > 64:
            k = self._until_index(records)
            if k is not None:
                out = self._feed(records[:k]) if k else []
                if any(a for _, a, _ in self._open.values()):
                    return out + self._feed(records[k:])
                self.ended = True
                return out
        return self._feed(records)

    def _until_index(self, records: list[bytes]) -> int | None:
        """The index of the first record at or after --until in a block that has one;
        None when it has none or a probed record is not one of conmon's."""
        def t(i: int) -> int | None:
            f = fields(records[i])
            return _time(f[0]) if f else None
        last = t(len(records) - 1)
        if last is None or last < self.flt.until_ns:
            return None
        lo, hi = 0, len(records) - 1  # records[hi] is at or after --until
        while lo < hi:
            mid = (lo + hi) // 2
            tm = t(mid)
            if tm is None:
                return None
            if tm < self.flt.until_ns:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _feed(self, records: list[bytes]) -> list[LogLine]:
        out: list[LogLine] = []
        if not records:
            return out
        if self.pending:
            self.resolve({_NAMES.get(r[36:42]) or (fields(r) or (0, ""))[1] for r in records})
        check_time = self.flt.timed and not self._block_in_time(records)
        if not check_time and (self._feed_bulk(records, out) if self.chunked
                               else self._feed_whole_lines(records, out)):
            return out
        wanted = self.flt.streams
        opened = self._open
        for r in records:
            # Inline form of fields() for conmon's fixed-width header.
            if len(r) >= 44 and r[35] == 32 and r[42] == 32 and r[36:42] in _NAMES and r[43] in (70, 80) \
                    and (len(r) == 44 or r[44] == 32):
                stream = _NAMES[r[36:42]]
                if stream not in wanted:
                    continue
                partial = r[43] == 80
                ts, content = r, r[45:]
            else:
                f = fields(r)
                if f is None or f[1] not in wanted:
                    continue
                ts, stream, partial, content = f
            line = opened.get(stream)
            if line is None:
                # The time is parsed only when needed: to filter, for line mode,
                # or (in _put) for the first line of a bulk entry.
                t: int | bytes = ts[:_TS] if ts is r else ts
                if check_time or not self.chunked:
                    t = _time(t) or 0
                admitted = self.flt.in_time(t) if check_time else True
                line = (t, admitted, bytearray())
            t, admitted, pieces = line
            if partial:
                opened[stream] = line
                if not admitted:
                    continue
                if self.chunked:
                    self._put(out, stream, t, content)
                    continue
                pieces += content
                if len(pieces) >= CHUNK:
                    # A line this long goes out in pieces (a message must stay small).
                    out.append(LogLine(stream, t, bytes(pieces)))
                    del pieces[:]
            else:
                if line is opened.get(stream):
                    del opened[stream]
                if not admitted:
                    continue
                if self.chunked:
                    self._put(out, stream, t, content + b"\n")
                else:
                    pieces += content
                    pieces += b"\n"
                    out.append(LogLine(stream, t, bytes(pieces)))
        if self.chunked and self._buf_len:
            out.append(self._take())
        return out

    def _feed_bulk(self, records: list[bytes], out: list[LogLine]) -> bool:
        """Bulk mode without a time filter for a block of conmon's fixed-width
        records, a run of one stream at a time: no per-record Python beyond a
        slice. False (nothing done) when a record is of another form."""
        heads = [r[35:45] for r in records]
        kinds = set(heads)
        if not kinds <= _HEADS or any(len(r) < 45 or r[34] == 32 for r in (records[0], records[-1])):
            return False
        partials = bool(kinds & _PARTIAL)
        if len({h[1:7] for h in kinds}) == 1:
            runs = [(heads[0][1:7], records)]
        else:
            runs = [(k, [r for _, r in g]) for k, g in groupby(zip([h[1:7] for h in heads], records),
                                                             key=itemgetter(0))]
        for name, rs in runs:
            stream = _NAMES[name]
            if stream not in self.flt.streams:
                continue
            if partials:
                data = b"".join([r[45:] + b"\n" if r[43] == 70 else r[45:] for r in rs])
            else:
                data = b"\n".join([r[45:] for r in rs]) + b"\n"
            line = self._open.get(stream)
            self._put(out, stream, line[0] if line else rs[0][:_TS], data)
        # The line each stream is in the middle of, for the next block.
        present = {h[1:7] for h in kinds}
        for name, stream in _NAMES.items():
            if name not in present:
                continue
            for i in range(len(heads) - 1, -1, -1):
                if heads[i][1:7] == name:
                    if heads[i][8] == 80:
                        self._open.setdefault(stream, (records[i][:_TS], True, bytearray()))
                    else:
                        self._open.pop(stream, None)
                    break
        if self._buf_len:
            out.append(self._take())
        return True

    def _feed_whole_lines(self, records: list[bytes], out: list[LogLine]) -> bool:
        """Line mode without a time filter for a block of whole lines (F records of
        conmon's form, no line in progress): one slice and one time a record. False
        (nothing done) otherwise."""
        if self._open:
            return False
        heads = {r[35:45] for r in records}
        if not heads <= _WHOLE or any(len(r) < 45 or r[34] == 32 for r in (records[0], records[-1])):
            return False
        wanted = self.flt.streams
        for r in records:
            stream = _NAMES[r[36:42]]
            if stream in wanted:
                out.append(LogLine(stream, _time(r[:_TS]) or 0, r[45:] + b"\n"))
        return True

    def flush(self) -> list[LogLine]:
        """Output left without a newline when the log ends (line mode; bulk mode sent it)."""
        out = []
        if not self.chunked:
            for stream, (t, admitted, pieces) in sorted(self._open.items(), key=lambda kv: kv[1][0]):
                if admitted and pieces:
                    out.append(LogLine(stream, t, bytes(pieces)))
        self._open.clear()
        return out

    def _put(self, out: list[LogLine], stream: str, t: int | bytes, data: bytes) -> None:
        if self._buf_len and (self._buf_stream != stream or self._buf_len >= CHUNK):
            out.append(self._take())
        if not self._buf_len:
            self._buf_stream = stream
            self._buf_time = t if isinstance(t, int) else _time(t) or 0
        self._buf.append(data)
        self._buf_len += len(data)

    def _take(self) -> LogLine:
        line = LogLine(self._buf_stream, self._buf_time, b"".join(self._buf))
        self._buf, self._buf_len = [], 0
        return line

    def _block_in_time(self, records: list[bytes]) -> bool:
        """Whether every line starting in this block is within the time filter, judged
        by its first and last record (and no line in progress was refused)."""
        if any(not admitted for _, admitted, _ in self._open.values()):
            return False
        first, last = fields(records[0]), fields(records[-1])
        if first is None or last is None:
            return False
        a, b = _time(first[0]), _time(last[0])
        return a is not None and b is not None and a <= b and self.flt.in_time(a) and self.flt.in_time(b)


_NAMES = {b"stdout": STDOUT, b"stderr": STDERR}
_HEADS = {b" stdout F ", b" stdout P ", b" stderr F ", b" stderr P "}
_PARTIAL = {b" stdout P ", b" stderr P "}
_WHOLE = _HEADS - _PARTIAL


class Records:
    """Whole records from one open file, block by block; a record still being
    written (no newline yet) stays for the next read."""

    def __init__(self, f):
        self.f = f
        self.rest = b""
        self.bytes_read = 0

    def read(self) -> list[bytes] | None:
        """The next block's records; None at the end of what the file holds now."""
        while True:
            data = self.f.read(BLOCK)
            if not data:
                return None
            self.bytes_read += len(data)
            if self.rest:
                data = self.rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                self.rest = data
                continue
            self.rest = data[cut + 1:]
            return data[:cut].split(b"\n")

    def all(self) -> Iterator[list[bytes]]:
        while (block := self.read()) is not None:
            yield block


def _reader(f) -> tuple[int, Callable[[int, int], bytes]]:
    """(size, pread(n, offset)) of an open file without moving its position. A
    compressed file (at most about max-size) is read whole, from a copy."""
    if isinstance(f, io.BytesIO):
        whole = f.getbuffer()
    elif isinstance(f, gzip.GzipFile):
        with gzip.open(f.name, "rb") as g:
            whole = memoryview(g.read())
    else:
        fd = f.fileno()
        return os.fstat(fd).st_size, lambda n, off: os.pread(fd, n, off)
    return len(whole), lambda n, off: bytes(whole[off:off + n])


def _backward(f, block: int = 1 << 16, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(offset, record) of one file's whole records before `end` (a record start;
    default the end of the file), from the last to the first."""
    size, pread = _reader(f)
    if end is not None:
        size = min(size, end)
    pos, carry, last = size, b"", True
    while pos > 0:
        start = max(0, pos - block)
        data = pread(pos - start, start) + carry
        pos = start
        lines = data.split(b"\n")
        if last:
            # After the last newline: nothing, or a record still being written.
            lines.pop()
            last = False
        carry = lines.pop(0) if start > 0 and lines else b""
        off = start + (len(carry) + 1 if start > 0 else 0)
        offsets = []
        for line in lines:
            offsets.append(off)
            off += len(line) + 1
        for i in range(len(lines) - 1, -1, -1):
            yield offsets[i], lines[i]


def tail_start(files: list, flt: LogFilter) -> tuple[int, int]:
    """(index in files, offset) from which decoding forward gives the last flt.tail
    lines whole: past the line end before the window of every stream whose
    earliest line in the window began in a piece (P) further back."""
    n = flt.tail
    count = 0
    seen: set[str] = set()
    unclosed: set[str] = set()
    last, end = len(files) - 1, None
    if flt.until_ns:
        # Files that start at or after --until, and the end of the one left from the
        # first record known to be, hold nothing to count: seek past them.
        probe = list(files)
        last, _ = seek_since(probe, flt.until_ns)
        end = _first_at(probe[last], flt.until_ns)
        if isinstance(files[last], gzip.GzipFile):
            files = files[:last] + [probe[last]]
        # A line a stream has in progress there began before --until (it is admitted)
        # and ends after it (it comes out last): the newest of that stream's lines.
        for stream in sorted(flt.streams):
            if open_at(files, last, end, stream):
                count += 1
                seen.add(stream)
                unclosed.add(stream)
    for i in range(last, -1, -1):
        for off, r in _backward(files[i], end=end if i == last else None):
            f = fields(r)
            if f is None or f[1] not in flt.streams:
                continue
            ts, stream, partial, _ = f
            if flt.timed:
                t = _time(ts)
                if t is None or (flt.until_ns and t >= flt.until_ns):
                    continue
                if flt.since_ns and t < flt.since_ns:
                    count = max(count, n)  # nothing before this is admitted
            first = stream not in seen
            seen.add(stream)
            if partial:
                if first and count < n:
                    count += 1
                    unclosed.add(stream)
            elif count < n:
                count += 1
                unclosed.add(stream)
            else:
                unclosed.discard(stream)
            if count >= n and not unclosed:
                return i, off + len(r) + 1
    return 0, 0


# A seek for --since stops bisecting at this span and reads it through.
_SEEK_SPAN = 1 << 16


def _first_time(f) -> int | None:
    """The time of a file's first record (a compressed file: from its first block)."""
    if isinstance(f, gzip.GzipFile):
        with gzip.open(f.name, "rb") as g:
            head = g.read(256)
    else:
        head = _reader(f)[1](256, 0)
    r = fields(head.split(b"\n", 1)[0]) if b"\n" in head else None
    return _time(r[0]) if r else None


def _record_at(pread: Callable[[int, int], bytes], size: int, pos: int) -> tuple[int, int | None]:
    """(offset, time) of the first whole record starting at or after pos (time
    None: not a record of conmon's, or none there)."""
    start = pos
    if pos > 0:
        p = pos - 1
        while True:
            chunk = pread(4096, p)
            if not chunk:
                return size, None
            k = chunk.find(b"\n")
            if k >= 0:
                start = p + k + 1
                break
            p += len(chunk)
    head = pread(256, start)
    k = head.find(b"\n")
    r = fields(head[:k]) if k >= 0 else None
    return start, (_time(r[0]) if r else None)


def seek_since(files: list, since_ns: int) -> tuple[int, int]:
    """(index in files, offset of a record start) such that every record before it
    is older than since_ns, near the first that is not: files whose successor starts
    before since_ns are skipped by their first record's time, the one left is
    bisected by offset (records are in time order: conmon stamps them as it
    writes). A compressed one is bisected in memory: files[i] is replaced with
    io.BytesIO of its content (`files` is the caller's copy)."""
    i = 0
    for j in range(len(files) - 1, 0, -1):
        t = _first_time(files[j])
        if t is not None and t < since_ns:
            i = j
            break
    if isinstance(files[i], gzip.GzipFile):
        size, pread = _reader(files[i])
        files[i] = io.BytesIO(pread(size, 0))
    return (i, *_bisect(files[i], since_ns))[:2]


def _bisect(f, since_ns: int) -> tuple[int, int]:
    """(lo, upper) record starts in one file: every record before lo is older than
    since_ns, none from upper on is (upper: the file's size when none is known)."""
    size, pread = _reader(f)
    lo, hi, upper = 0, size, size
    while hi - lo > _SEEK_SPAN:
        mid = (lo + hi) // 2
        start, t = _record_at(pread, size, mid)
        if start >= hi or t is None:
            hi = mid  # nothing to judge by here: keep the earlier half
        elif t < since_ns:
            lo = start
        else:
            hi = upper = start
    return lo, upper


_HEADER_OF = {name: re.compile(rb"(?:^|\n)[^\n ]+ " + name.encode() + rb" ([PF])(?= |$)", re.M)
              for name in (STDOUT, STDERR)}


def _first_at(f, t_ns: int) -> int:
    """The offset of a file's first record at or after t_ns (its size when none)."""
    lo, upper = _bisect(f, t_ns)
    size, pread = _reader(f)
    data = pread(upper - lo, lo)
    off = lo
    for r in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        fr = fields(r)
        t = _time(fr[0]) if fr else None
        if t is not None and t >= t_ns:
            return off
        off += len(r) + 1
    return upper


def open_at(files: list, i: int, off: int, stream: str) -> bool:
    """Whether `stream` is in the middle of a line at (files[i], off): its last
    record before that is a piece (P). Read backwards in blocks as far as that
    record, each block searched in one regular expression for the stream's record
    headers (a record starts a line; its content follows the third space)."""
    rx = _HEADER_OF[stream]
    for j in range(i, -1, -1):
        size, pread = _reader(files[j])
        pos = min(size, off) if j == i else size
        while pos > 0:
            start = max(0, pos - BLOCK)
            data = pread(pos - start, start)
            if start > 0:
                # The line cut by the block's start is searched with the next block.
                cut = data.find(b"\n")
                if cut < 0:
                    pos = start
                    continue
                data, pos = data[cut:], start + cut
            else:
                pos = 0
            last = None
            for last in rx.finditer(data):
                pass
            if last is not None:
                return last.group(1) == b"P"
    return False


def _seek(files: list, flt: LogFilter, decoder: "Decoder", lazy: bool = True) -> tuple[list, int]:
    """For a --since without --tail: (the files to read, the first positioned at
    the seek; how many of `files` were skipped). Lines a stream has in progress at
    that point started before --since: the decoder refuses them. Lazily, each
    stream's state is looked up when it first shows up after the point (a stream
    that never does costs nothing), else at once."""
    files = list(files)
    i, off = seek_since(files, flt.since_ns)
    files[i].seek(off)
    if i or off:
        where = (files[:i + 1], i, off)
        decoder.pending = {s: where for s in flt.streams}
        if not lazy:
            decoder.resolve(set(flt.streams))
    return files[i:], i


def read(snap: logfiles.Snapshot, flt: LogFilter, chunked: bool,
         stats: dict | None = None) -> Iterator[LogLine]:
    """Everything the files of `snap` hold now that passes the filter, in order."""
    files = [f for _, f in snap.rotated] + ([snap.live] if snap.live is not None else [])
    readers = [Records(f) for f in files]
    decoder = Decoder(flt, chunked and flt.tail < 0)
    try:
        if flt.tail == 0:
            return
        start = 0
        if flt.tail > 0:
            start, off = tail_start(files, flt)
            files[start].seek(off)
            todo = readers[start:]
        elif flt.since_ns:
            seeked, start = _seek(files, flt, decoder)
            todo = [Records(f) for f in seeked]
            readers = readers[:start] + todo
        else:
            todo = readers
        lines = _decode(todo, decoder)
        if flt.tail > 0:
            kept = deque(lines, maxlen=flt.tail)
            yield from (_rechunk(kept) if chunked else kept)
        else:
            yield from lines
    finally:
        if stats is not None:
            stats["bytes_read"] = sum(r.bytes_read for r in readers)


def _decode(readers: list[Records], decoder: Decoder) -> Iterator[LogLine]:
    for r in readers:
        for block in r.all():
            yield from decoder.feed(block)
            if decoder.past_until(block):
                yield from decoder.flush()
                return
    yield from decoder.flush()


def _rechunk(lines: Iterable[LogLine]) -> Iterator[LogLine]:
    """Consecutive lines of one stream as bulk entries."""
    buf: list[LogLine] = []
    size = 0
    for line in lines:
        if buf and (buf[0].stream != line.stream or size >= CHUNK):
            yield LogLine(buf[0].stream, buf[0].time_ns, b"".join(x.data for x in buf))
            buf, size = [], 0
        buf.append(line)
        size += len(line.data)
    if buf:
        yield LogLine(buf[0].stream, buf[0].time_ns, b"".join(x.data for x in buf))


def read_all(path: str, flt: LogFilter, chunked: bool = False,
             stats: dict | None = None) -> list[LogLine]:
    snap = logfiles.snapshot(path)
    try:
        return list(read(snap, flt, chunked, stats))
    finally:
        snap.close()


def _history(snap: logfiles.Snapshot, flt: LogFilter, chunked: bool
             ) -> tuple[list[LogLine], Decoder, Records | None]:
    """What follow sends first: as read() would, except that lines still in progress
    stay open in the returned decoder (tail counts them, as read() does), and the
    reader of the live file, positioned after what was read."""
    files = [f for _, f in snap.rotated] + ([snap.live] if snap.live is not None else [])
    decoder = Decoder(flt, chunked)
    if not files:
        return [], decoder, None
    if flt.tail < 0:
        if flt.since_ns:
            # The files are closed after this: the streams' state is found now.
            files, _ = _seek(files, flt, decoder, lazy=False)
        readers = [Records(f) for f in files]
        out = [line for line in _decode_open(readers, decoder)]
    else:
        start, off = tail_start(files, flt)
        files[start].seek(off)
        readers = [Records(f) for f in files[start:]]
        hist = Decoder(flt, False)
        complete = list(_decode_open(readers, hist))
        in_progress = [(s, line) for s, line in hist._open.items() if line[1]]
        kept = deque(complete, maxlen=max(0, flt.tail - len(in_progress)))
        if chunked:
            kept.extend(LogLine(s, t, bytes(p)) for s, (t, _, p) in in_progress if p)
            out = list(_rechunk(kept))
            decoder._open = {s: (t, a, bytearray()) for s, (t, a, _) in hist._open.items()}
        else:
            out = list(kept)
            decoder._open = hist._open
    return out, decoder, readers[-1] if snap.live is not None else None


class _Follower:
    """The blocking half of follow (run in a thread): reads what was written since
    the last step, across rotations."""

    # Blocks read in one step: a writer faster than the reader gets steps back to back.
    STEP_BLOCKS = 8

    def __init__(self, path: str, flt: LogFilter, chunked: bool):
        self.path = path
        self.flt = flt
        self.chunked = chunked
        self.live: Records | None = None

    def history(self) -> list[LogLine]:
        snap = logfiles.snapshot(self.path)
        try:
            out, self.decoder, self.live = _history(snap, self.flt, self.chunked)
            snap.live = None  # now owned by self.live
            self.live_n = snap.live_n
            return out
        finally:
            snap.close()

    def step(self, done: bool) -> tuple[list[LogLine], bool]:
        """(entries, whether more is waiting). With `done` (conmon has exited, so
        the files are complete) it reads to the end and flushes."""
        out: list[LogLine] = []
        feed = self.decoder.feed
        if self.live is not None:
            for _ in range(self.STEP_BLOCKS):
                block = self.live.read()
                if block is None:
                    break
                out += feed(block)
            else:
                if not done:
                    return out, True
                out += [line for block in self.live.all() for line in feed(block)]
        if self.live is None or _replaced(self.path, self.live.f):
            # Rotated (or not made yet): the files after ours, then the new live one.
            # conmon closes the old file before it makes the new one, so ours is
            # drained then; until the new one exists, ours may still grow.
            nxt = logfiles.snapshot(self.path, after=self.live_n)
            if nxt.live is None:
                nxt.close()  # nothing after ours yet
            else:
                if self.live is not None:
                    out += [line for block in self.live.all() for line in feed(block)]
                    self.live.f.close()
                if nxt.rotated and nxt.rotated[0][0] > self.live_n + 1:
                    # max-file pruned files this reader had not got to: a line in
                    # progress is not joined across the gap.
                    out += self.decoder.flush()
                for _, f in nxt.rotated:
                    out += [line for block in Records(f).all() for line in feed(block)]
                nxt.live, new_live = None, nxt.live
                nxt.close()
                self.live_n = nxt.live_n
                self.live = Records(new_live)
                return out, True
        if done:
            out += self.decoder.flush()
        return out, False

    def close(self) -> None:
        if self.live is not None:
            self.live.f.close()
            self.live = None


async def follow(path: str, flt: LogFilter, chunked: bool, exited: Callable[[], bool],
                 wait_exit: Callable[[float], "asyncio.Future | asyncio.Task"]) -> AsyncIterator[list[LogLine]]:
    """What the files hold now (after tail), then what is written, across rotations,
    until the container has exited and the files are drained. Yields lists of entries.
    `wait_exit(timeout)` returns when it exits or the timeout passes. Files are read
    in a thread, so the event loop (and the rotator on it) never waits for a reader."""
    f = _Follower(path, flt, chunked)
    try:
        out = await asyncio.to_thread(f.history)
        if out:
            yield out
        while True:
            # Checked before reading: output written before the exit is in the files
            # once conmon has exited, so a read after this drains it all.
            done = exited()
            out, more = await asyncio.to_thread(f.step, done)
            if out:
                yield out
            if done and not more:
                return
            if not more:
                await wait_exit(FOLLOW_INTERVAL)
    finally:
        f.close()


def _decode_open(readers: list[Records], decoder: Decoder) -> Iterator[LogLine]:
    for r in readers:
        for block in r.all():
            yield from decoder.feed(block)


def _replaced(path: str, f) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return True
