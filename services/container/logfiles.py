"""A container's log files: the driver policy, which files exist in which order, rotation.

Layout in the bundle (k8s-file records in every file):

    ctr.log          the live file conmon appends to
    ctr.log.<n>      rotated files; a larger n is newer (unlike docker's .1 = newest,
                     so that a name never changes once given and a reader that is
                     between two files always knows which one comes next)
    ctr.log.<n>.gz   the same, compressed (compress=true)

Rotation (conmon 2.1 only truncates at --log-size-max, so the service rotates):
the live file is renamed to ctr.log.<n>, then conmon is told on its control fifo
to reopen its log ("2 0 0\\n", REOPEN_LOGS). conmon then fsyncs and closes the
old descriptor (so whatever it wrote after the rename is in ctr.log.<n>), makes
an empty ctr.log.tmp and renames it to ctr.log. Nothing is ever written to a
file without a name, so no byte is lost. conmon is never given --log-size-max:
its own rotation renames a new file over the live one and the old one is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import gzip
import os
import re
import shutil
import struct
import termios
from dataclasses import dataclass

import structlog

from services.common import errors
from services.container.model import LogConfig

log = structlog.get_logger(__name__)

DRIVERS = ("json-file", "local", "none")
_OPTIONS = {"max-size", "max-file", "compress"}
# docker's local driver defaults (daemon/logger/local): 20 MiB x 5 files, compressed.
LOCAL_DEFAULTS = {"max-size": "20m", "max-file": "5", "compress": "true"}
JSON_DEFAULTS = {"max-size": "-1", "max-file": "1", "compress": "false"}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@dataclass(frozen=True)
class LogPolicy:
    """What a driver with its options means for the files."""

    driver: str
    max_size: int = -1  # bytes; -1: never rotate
    max_file: int = 1  # files kept, the live one included
    compress: bool = False

    @property
    def reads(self) -> bool:
        return self.driver != "none"


def parse_options(text: str) -> tuple[tuple[str, str], ...]:
    """`key=value,key=value` (the daemon default's form)."""
    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise errors.InvalidArgument(f"invalid log opt {item!r}: expected key=value")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def _size(text: str) -> int:
    if text.strip() == "-1":
        return -1
    m = _SIZE.match(text.strip())
    if not m:
        raise errors.InvalidArgument(f"invalid max-size {text!r}: expected a size such as 10m")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def resolve(cfg: LogConfig, default: LogConfig) -> LogConfig:
    """The configuration in force: the daemon default for an empty driver, then the
    driver's defaults under the given options; refused when anything is unknown."""
    if not cfg.driver:
        # Options without a driver are the default driver's, over the daemon's (docker merges
        # so); a size or count of the caller's replaces the daemon's rotation as a whole.
        base = dict(default.options)
        if {"max-size", "max-file"} & {k for k, _ in cfg.options}:
            base.pop("max-size", None)
            base.pop("max-file", None)
        cfg = LogConfig(default.driver, tuple({**base, **dict(cfg.options)}.items()))
    if cfg.driver not in DRIVERS:
        raise errors.InvalidArgument(
            f"logger: no log driver named '{cfg.driver}' is registered")
    given = dict(cfg.options)
    if cfg.driver == "none":
        if given:
            raise errors.InvalidArgument(f"unknown log opt '{next(iter(given))}' for none log driver")
        return LogConfig("none")
    for key in given:
        if key not in _OPTIONS:
            raise errors.InvalidArgument(f"unknown log opt '{key}' for {cfg.driver} log driver")
    opts = {**(LOCAL_DEFAULTS if cfg.driver == "local" else JSON_DEFAULTS), **given}
    resolved = LogConfig(cfg.driver, tuple(sorted(opts.items())))
    policy(resolved)  # validates the values
    return resolved


def policy(cfg: LogConfig) -> LogPolicy:
    """The policy of a resolved configuration (see resolve)."""
    if cfg.driver == "none":
        return LogPolicy("none")
    opts = dict(cfg.options)
    max_size = _size(opts.get("max-size", "-1"))
    if max_size == 0 or max_size < -1:
        raise errors.InvalidArgument(f"invalid max-size {opts['max-size']!r}: must be positive")
    try:
        max_file = int(opts.get("max-file", "1"))
    except ValueError:
        raise errors.InvalidArgument(f"invalid max-file {opts['max-file']!r}: expected a number") from None
    if max_file < 1:
        raise errors.InvalidArgument("max-file cannot be less than 1")
    # max-file without max-size is accepted and changes nothing (nothing rotates), as in docker.
    compress = opts.get("compress", "false").lower()
    if compress not in ("true", "false", "1", "0"):
        raise errors.InvalidArgument(f"invalid compress {opts['compress']!r}: expected true or false")
    if compress in ("true", "1") and max_size < 0:
        raise errors.InvalidArgument("compress cannot be true when max-size is not set")
    return LogPolicy(cfg.driver, max_size, max_file, compress in ("true", "1"))


# -- the files -------------------------------------------------------------------------

def segments(live: str) -> list[tuple[int, str]]:
    """Rotated files as (n, path), oldest first; for an n both plain and compressed
    exist only while it is being compressed, and then both are complete."""
    d, base = os.path.split(live)
    found: dict[int, str] = {}
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    for name in names:
        if not name.startswith(base + "."):
            continue
        rest = name[len(base) + 1:]
        if rest.isdigit():
            found[int(rest)] = os.path.join(d, name)
        elif rest.endswith(".gz") and rest[:-3].isdigit():
            found.setdefault(int(rest[:-3]), os.path.join(d, name))
    return sorted(found.items())


def open_file(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb", buffering=0)


@dataclass
class Snapshot:
    """Open files to read in order: rotated ones after some n, then the live one."""

    rotated: list[tuple[int, object]]
    # The file conmon writes to: the live one, or while a rotation waits for
    # conmon's reopen, the newest rotated one.
    live: object | None
    # The n the live file has or will get when it is rotated.
    live_n: int

    def close(self) -> None:
        for _, f in self.rotated:
            f.close()
        if self.live is not None:
            self.live.close()


def snapshot(live: str, after: int = 0) -> Snapshot:
    """Opens, consistently, the rotated files with n > after and the live file.

    A rotation between listing and opening would skip or repeat a file: the listing
    is taken again until it did not change around the opens."""
    while True:
        listed = [(n, p) for n, p in segments(live) if n > after]
        opened: list[tuple[int, object]] = []
        try:
            for n, p in listed:
                opened.append((n, open_file(p)))
        except FileNotFoundError:
            for _, f in opened:
                f.close()
            continue  # compressed or pruned meanwhile
        try:
            live_f = open(live, "rb", buffering=0)
        except FileNotFoundError:
            live_f = None
        again = [(n, p) for n, p in segments(live) if n > after]
        top = max([after] + [n for n, _ in listed])
        if max([after] + [n for n, _ in again]) == top:
            if live_f is None and opened:
                # Renamed, conmon not reopened yet (or it exited first): the newest
                # rotated file is the one still written to.
                return Snapshot(opened[:-1], opened[-1][1], top)
            return Snapshot(opened, live_f, top + 1)
        for _, f in opened:
            f.close()
        if live_f is not None:
            live_f.close()


def total_size(live: str) -> int:
    """Bytes in the live and rotated files."""
    total = 0
    for p in [live] + [p for _, p in segments(live)]:
        try:
            total += os.stat(p).st_size
        except OSError:
            pass
    return total


# -- rotation --------------------------------------------------------------------------

def _compress(path: str) -> None:
    tmp = path + ".gz.tmp"
    with open(path, "rb") as src, gzip.open(tmp, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, path + ".gz")
    os.unlink(path)


def _prune(live: str, keep: int) -> None:
    """Keeps the newest `keep` rotated files."""
    rotated = segments(live)
    for n, path in rotated[:max(0, len(rotated) - keep)]:
        for p in (os.path.join(os.path.dirname(live), f"{os.path.basename(live)}.{n}"),
                  os.path.join(os.path.dirname(live), f"{os.path.basename(live)}.{n}.gz")):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def _next_n(live: str) -> int:
    rotated = segments(live)
    return rotated[-1][0] + 1 if rotated else 1


def _finish(live: str, path: str, p: LogPolicy) -> None:
    """After a rotated file is complete: compress it, drop what max-file does not keep."""
    if p.max_file <= 1:
        os.unlink(path)
        return
    _prune(live, p.max_file - 1)
    if p.compress:
        # Also any file a rotation cut short by a stop of the service left plain.
        for _, rotated in segments(live):
            if not rotated.endswith(".gz"):
                _compress(rotated)


def rotate_closed(live: str, p: LogPolicy) -> None:
    """Rotates a live file no conmon writes to (before a new run appends to it)."""
    if p.max_size < 0:
        return
    try:
        if os.path.getsize(live) < p.max_size:
            return
    except FileNotFoundError:
        return
    path = f"{live}.{_next_n(live)}"
    os.rename(live, path)
    _finish(live, path, p)


async def send_ctl(ctl: str, message: str) -> bool:
    """Writes one message to a conmon control fifo, alone in the pipe.

    conmon 2.1.6 handles several messages read at once wrongly (it parses the
    first again and again), so a message is written only once the pipe is
    empty (FIONREAD): every writer is in this process. False when no conmon
    reads the fifo."""
    try:
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        buf = bytearray(4)
        for _ in range(2000):
            fcntl.ioctl(fd, termios.FIONREAD, buf)
            if struct.unpack("i", buf)[0] == 0:
                break
            await asyncio.sleep(0.005)
        os.write(fd, message.encode())
        return True
    except OSError as exc:
        log.info("ctl_write_failed", ctl=ctl, error=str(exc))
        return False
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
IN_MODIFY, IN_IGNORED, IN_NONBLOCK, IN_CLOEXEC = 0x2, 0x8000, 0o4000, 0o2000000
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
# Checks of the size are at least this far apart while the container writes fast:
# a file passes max-size by at most what is written in this time.
MIN_CHECK_INTERVAL = 0.01


class _Watches:
    """One inotify instance for every log this process watches, a watch per file.

    An instance per container would run out at fs.inotify.max_user_instances
    (128 by default, shared by every process of the user); watches are counted
    against max_user_watches, which is far larger."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.woken: dict[int, set[asyncio.Event]] = {}
        loop.add_reader(self.fd, self._read)

    def add(self, path: str, woke: asyncio.Event) -> int:
        """Sets `woke` whenever `path` is modified; the watch, or -1 when it does not exist."""
        wd = _libc.inotify_add_watch(self.fd, path.encode(), IN_MODIFY)
        if wd < 0:
            if ctypes.get_errno() != errno.ENOENT:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
            return -1
        self.woken.setdefault(wd, set()).add(woke)
        return wd

    def remove(self, wd: int, woke: asyncio.Event) -> None:
        waiters = self.woken.get(wd)
        if waiters is None:
            return
        waiters.discard(woke)
        if not waiters:
            # Two rotators never watch one file, but a watch is per inode: drop it
            # only when nobody waits on it.
            del self.woken[wd]
            _libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly once the file is gone

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size + length
            # IN_IGNORED: the kernel dropped the watch (its file is gone).
            for woke in (self.woken.pop(wd, ()) if mask & IN_IGNORED else self.woken.get(wd, ())):
                woke.set()


_watches: dict[asyncio.AbstractEventLoop, _Watches] = {}


def _watches_of(loop: asyncio.AbstractEventLoop) -> _Watches:
    w = _watches.get(loop)
    if w is None or w.loop.is_closed():
        w = _watches[loop] = _Watches(loop)
    return w


class Rotator:
    """Rotates one run's live log past max-size while its conmon runs.

    Woken by inotify when the live file is written (no polling while it is idle)."""

    def __init__(self, live: str, ctl: str, p: LogPolicy):
        self.live = live
        self.ctl = ctl
        self.policy = p

    async def run(self, exited: asyncio.Event) -> None:
        watches = _watches_of(asyncio.get_running_loop())
        woke = asyncio.Event()
        while not exited.is_set():
            wd = watches.add(self.live, woke)
            try:
                while not exited.is_set():
                    if self._full():
                        await self._rotate(exited)
                        break
                    waiter = asyncio.ensure_future(woke.wait())
                    done = asyncio.ensure_future(exited.wait())
                    await asyncio.wait({waiter, done}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    done.cancel()
                    woke.clear()
                    # At most one check per interval, but an exit ends the wait at once:
                    # a run's exit status is given only after this returns (settled).
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(exited.wait(), MIN_CHECK_INTERVAL)
            finally:
                if wd >= 0:
                    watches.remove(wd, woke)

    def _full(self) -> bool:
        try:
            return os.path.getsize(self.live) >= self.policy.max_size
        except FileNotFoundError:
            return False

    async def _rotate(self, exited: asyncio.Event) -> None:
        old = os.stat(self.live).st_ino
        path = f"{self.live}.{_next_n(self.live)}"
        os.rename(self.live, path)
        # The rotated file is complete once conmon has made the new live file (it
        # closes the old one first) or has exited (without a reader on the fifo).
        # conmon handles the fifo between writes; it can be held up for long by an
        # attached reader that does not read, hence the backing off.
        reopening = await send_ctl(self.ctl, "2 0 0\n")
        pause = 0.001
        while reopening and not exited.is_set():
            try:
                if os.stat(self.live).st_ino != old:
                    break
            except FileNotFoundError:
                pass
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
        await asyncio.to_thread(_finish, self.live, path, self.policy)
        log.debug("log_rotated", path=path)
