"""Reading conmon's k8s-file logs.

Each line conmon writes is `<RFC3339Nano time> <stdout|stderr> <P|F> <content>\n`:
F ends a line of the container's output, P is a piece of a longer line (or of
output without a newline yet) to be joined with what follows on that stream.

At the size cap (--log-size-max) conmon does not keep older files: it writes a
fresh file beside the log and renames it over the log, so the log then starts
again from empty and earlier output is gone (checked: a 2000-byte cap keeps
only the newest lines, the file never exceeds the cap). A follower still holds
the old file open, drains it, notices the new inode and continues from the
start of the new file; it loses lines only if the log rotates twice between two
of its reads (every FOLLOW_INTERVAL).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from services.container.model import LogLine

# Follow re-reads the file this often while the container runs; its end is
# signalled at once by the exit watcher.
FOLLOW_INTERVAL = 0.05


@dataclass(frozen=True)
class LogFilter:
    tail: int = -1
    since_ns: int = 0
    until_ns: int = 0
    streams: frozenset[str] = frozenset({"stdout", "stderr"})

    def admits(self, line: LogLine) -> bool:
        if line.stream not in self.streams:
            return False
        if self.since_ns and line.time_ns < self.since_ns:
            return False
        if self.until_ns and line.time_ns >= self.until_ns:
            return False
        return True


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


class Parser:
    """Turns k8s-file records into whole lines, joining partial (P) pieces per stream."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[int, bytes]] = {}

    def feed(self, record: bytes) -> LogLine | None:
        try:
            ts, stream, tag, content = record.split(b" ", 3)
        except ValueError:
            # A tag with empty content has no trailing space after the tag.
            parts = record.split(b" ")
            if len(parts) != 3:
                return None
            ts, stream, tag = parts
            content = b""
        try:
            time_ns = parse_time(ts)
        except ValueError:
            return None
        name = stream.decode(errors="replace")
        started, before = self._pending.pop(name, (time_ns, b""))
        if tag == b"P":
            self._pending[name] = (started, before + content)
            return None
        return LogLine(name, started, before + content + b"\n")

    def flush(self) -> Iterator[LogLine]:
        """Output left without a newline when the container exited."""
        for name, (started, data) in sorted(self._pending.items(), key=lambda kv: kv[1][0]):
            if data:
                yield LogLine(name, started, data)
        self._pending.clear()


class LogReader:
    """Reads whole records from a log file that conmon may replace at its size cap."""

    def __init__(self, path: str):
        self.path = path
        self._file = None
        self._ino = None
        self._rest = b""

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def read(self) -> list[bytes]:
        """Complete records written since the last call."""
        if self._file is None:
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError:
                return []
            self._ino = os.fstat(self._file.fileno()).st_ino
        records = self._drain()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return records
        if st.st_ino == self._ino and st.st_size < self._file.tell():
            # Truncated in place (not what conmon 2.1 does, but cheap to survive).
            self._file.seek(0)
            self._rest = b""
            return records + self._drain()
        if st.st_ino != self._ino:
            # conmon rotated: finish the old file, then start on the new one.
            records += self._drain()
            self.close()
            self._rest = b""
            self._file = open(self.path, "rb")
            self._ino = os.fstat(self._file.fileno()).st_ino
            records += self._drain()
        return records

    def _drain(self) -> list[bytes]:
        data = self._file.read()
        if not data:
            return []
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        return lines


def read_all(path: str, flt: LogFilter) -> list[LogLine]:
    reader = LogReader(path)
    try:
        return list(_select(_lines(reader.read(), Parser(), final=True), flt))
    finally:
        reader.close()


def _lines(records: Iterable[bytes], parser: Parser, final: bool) -> Iterator[LogLine]:
    for record in records:
        line = parser.feed(record)
        if line is not None:
            yield line
    if final:
        yield from parser.flush()


def _select(lines: Iterable[LogLine], flt: LogFilter) -> Iterator[LogLine]:
    admitted = (line for line in lines if flt.admits(line))
    if flt.tail >= 0:
        return iter(deque(admitted, maxlen=flt.tail)) if flt.tail else iter(())
    return admitted


async def follow(path: str, flt: LogFilter, exited: Callable[[], bool],
                 wait_exit: Callable[[float], "asyncio.Future | asyncio.Task"]) -> AsyncIterator[LogLine]:
    """Existing lines (after tail), then new ones until the container has exited and
    the file is drained. `wait_exit(timeout)` returns when it exits or the timeout passes.
    """
    reader = LogReader(path)
    parser = Parser()
    try:
        for line in _select(_lines(reader.read(), parser, final=False), flt):
            yield line
        while True:
            # Check before reading: output written before the exit is in the file
            # once conmon has exited, so one more read after this drains it all.
            done = exited()
            for line in _lines(reader.read(), parser, final=done):
                if flt.admits(line):
                    yield line
            if done:
                return
            await wait_exit(FOLLOW_INTERVAL)
    finally:
        reader.close()
