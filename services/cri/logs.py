"""Container logs at the path the kubelet chose, in the CRI log format.

The container service keeps each container's output in its own log files
(conmon's k8s-file records) and serves it through GetContainerLogs; the
kubelet wants it at <log_directory>/<log_path> in the CRI format:

    2026-12-01T23:58:31.123456789Z stdout F hello
    2026-12-01T23:58:31.123456790Z stderr P a partial line, continued by the next record

A relay per container follows GetContainerLogs from the container's start
until its process exits and writes each line there, so the file is the CRI
service's own (the kubelet may rename it and ask for ReopenContainerLog) and
the container service's files are never read by anyone else. A relay that
was cut short (the CRI service restarted) resumes after the time of the last
record in the file.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timezone

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from berth.container.v1 import container_pb2
from berth.types.v1 import stdio_pb2
from services.common import errors

log = structlog.get_logger(__name__)

STREAMS = {stdio_pb2.OUTPUT_STREAM_STDOUT: b"stdout", stdio_pb2.OUTPUT_STREAM_STDERR: b"stderr"}


def cri_time(ns: int) -> bytes:
    """RFC 3339 with nanoseconds in UTC, as the kubelet's parser reads it."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z".encode()


def cri_record(ns: int, stream: bytes, data: bytes) -> bytes:
    """One record: a line keeps its newline as the F(ull) tag, a line without one is P(artial)."""
    if data.endswith(b"\n"):
        return b"%s %s F %s" % (cri_time(ns), stream, data)
    return b"%s %s P %s\n" % (cri_time(ns), stream, data)


def last_record_ns(path: str) -> int:
    """The time of the last record in a CRI log file; 0 when it has none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read()
    except FileNotFoundError:
        return 0
    for line in reversed(tail.splitlines()):
        stamp = line.split(b" ", 1)[0].decode(errors="replace")
        try:
            whole, _, frac = stamp.rstrip("Z").partition(".")
            seconds = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
            return int(seconds) * 1_000_000_000 + int((frac + "000000000")[:9])
        except ValueError:
            continue
    return 0


class Relay:
    """One container's relay: an open file that ReopenContainerLog can swap."""

    def __init__(self, container_id: str, path: str):
        self.container_id = container_id
        self.path = path
        self.fd = self._open()
        self.task: asyncio.Task | None = None

    def _open(self) -> int:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def reopen(self) -> None:
        # The kubelet renamed the file away: what follows goes to a new one at the path.
        old, self.fd = self.fd, self._open()
        os.close(old)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LogRelays:
    def __init__(self, container):
        self._container = container
        self._relays: dict[str, Relay] = {}

    def open(self, container_id: str, path: str) -> None:
        """Make (or append to) the container's log file; fails before anything runs."""
        if container_id not in self._relays and path:
            try:
                self._relays[container_id] = Relay(container_id, path)
            except OSError as exc:
                raise errors.InvalidArgument(f"cannot open the container log {path}: {exc.strerror}") from None

    def discard(self, container_id: str) -> None:
        relay = self._relays.pop(container_id, None)
        if relay is not None and relay.task is None:
            relay.close()

    def follow(self, container_id: str, resume: bool = False) -> None:
        """Relay the container's output to its file until its process exits (after a restart
        of this service, from the time of the last record in the file)."""
        relay = self._relays.get(container_id)
        if relay is not None and relay.task is None:
            since = last_record_ns(relay.path) + 1 if resume else 0
            relay.task = asyncio.create_task(self._run(relay, since))

    async def _run(self, relay: Relay, since_ns: int) -> None:
        request = container_pb2.GetContainerLogsRequest(id=relay.container_id, follow=True, tail=-1)
        if since_ns:
            seconds, nanos = divmod(since_ns, 1_000_000_000)
            request.since.CopyFrom(Timestamp(seconds=seconds, nanos=nanos))
        try:
            async for reply in self._container.GetContainerLogs(request):
                chunk = reply.chunk
                ns = chunk.time.seconds * 1_000_000_000 + chunk.time.nanos or time.time_ns()
                # On the loop, not in a thread: a ReopenContainerLog never swaps the file mid-write.
                relay.write(cri_record(ns, STREAMS.get(chunk.stream, b"stdout"), chunk.data))
        except errors.NotFound:
            pass
        except errors.BerthError as exc:
            log.warning("log_relay_failed", container_id=relay.container_id, error=exc.message)
        finally:
            relay.close()
            self._relays.pop(relay.container_id, None)

    def reopen(self, container_id: str) -> None:
        relay = self._relays.get(container_id)
        if relay is None:
            raise errors.FailedPrecondition(
                f"container {container_id} is not running: its log cannot be reopened")
        relay.reopen()

    async def drained(self, container_id: str, timeout: float) -> None:
        """Wait (a bounded time) until the relay wrote the last line of an exited container."""
        relay = self._relays.get(container_id)
        if relay is not None and relay.task is not None:
            await asyncio.wait([relay.task], timeout=timeout)

    async def close(self) -> None:
        tasks = [r.task for r in self._relays.values() if r.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
