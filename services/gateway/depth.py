"""Containers in depth at the Engine API: exec, attach, pause, top, stats, update, cp, export.

The container service does the work; the gateway adds what users see: names
resolved to ids, exec records between ExecCreate and ExecStart (nothing runs
yet, so nothing is on the node), docker's event names, CPU percentages from
two samples, auto-removal after an attached `run -it --rm`.

Events, in the order they happen for one exec:

    exec_create: <cmd>   ExecCreate recorded it
    exec_start: <cmd>    the container service reported it running
    exec_die             its monitor recorded the exit (attributes: execID, exitCode)

A short exec can exit before its start is announced; its exit then waits until
"exec_start" has been published, so "exec_die" never comes first.

For other services (the healthcheck monitor) `run_exec` runs a command to its
end and returns its exit code and output.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from services.common import errors
from services.gateway import convert

log = structlog.get_logger(__name__)

_END = object()
# Stats: the pause between the two samples a single (--no-stream) figure needs.
STATS_PREREAD = 0.5
STATS_INTERVAL_MS = 1000


@dataclass
class _PendingExec:
    container_id: str
    request: engine_pb2.ExecCreateRequest


class Depth:
    def __init__(self, gw):
        self._gw = gw
        self._c = gw._container
        self._pending: dict[str, _PendingExec] = {}
        # Execs being started, exits that arrived before their start was announced,
        # and execs run for the engine itself (healthchecks: no events).
        self._starting: set[str] = set()
        self._early: dict[str, container_pb2.TaskEvent] = {}
        self._quiet: set[str] = set()
        self._cmds: dict[str, tuple[str, str]] = {}

    def _publish(self, action: str, cid: str, **attrs: str) -> None:
        self._gw._publish_container(action, cid, **attrs)

    # -- exec -------------------------------------------------------------------------

    async def exec_create(self, request: engine_pb2.ExecCreateRequest) -> str:
        c = await self._gw._get(request.container)
        if c.status != container_pb2.STATUS_RUNNING:
            if c.status == container_pb2.STATUS_PAUSED:
                raise errors.FailedPrecondition(
                    f"Container {c.id} is paused, unpause the container before exec")
            raise errors.FailedPrecondition(f"container {c.id} is not running")
        if not request.cmd:
            raise errors.InvalidArgument("No exec command specified")
        exec_id = secrets.token_hex(32)
        self._pending[exec_id] = _PendingExec(c.id, request)
        self._gw._remember(c)
        cmd = " ".join(request.cmd)
        self._cmds[exec_id] = (c.id, cmd)
        self._publish(f"exec_create: {cmd}", c.id, execID=exec_id)
        return exec_id

    async def exec_inspect(self, exec_id: str) -> engine_pb2.ExecInfo:
        pending = self._pending.get(exec_id)
        if pending is not None:
            r = pending.request
            return engine_pb2.ExecInfo(id=exec_id, container_id=pending.container_id, cmd=r.cmd,
                                       tty=r.tty, open_stdin=r.attach_stdin, user=r.user,
                                       working_dir=r.working_dir)
        info = await self._c.ExecInspect(container_pb2.ExecInspectRequest(exec_id=exec_id))
        return engine_pb2.ExecInfo(
            id=info.id, container_id=info.container_id, cmd=info.process.args, tty=info.tty,
            open_stdin=info.stdin, running=info.running, exited=info.exited,
            exit_code=info.exit_code, pid=info.pid, user=info.process.user,
            working_dir=info.process.cwd)

    async def exec_start(self, requests) -> AsyncIterator[engine_pb2.ExecStartResponse]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "start":
            raise errors.InvalidArgument("the first message must be start")
        params = first.start
        pending = self._pending.pop(params.exec_id, None)
        if pending is None:
            with contextlib.suppress(errors.NotFound):
                await self._c.ExecInspect(container_pb2.ExecInspectRequest(exec_id=params.exec_id))
                raise errors.Conflict(f"Exec {params.exec_id} has already been started")
            raise errors.NotFound(f"No such exec instance: {params.exec_id}")
        r = pending.request
        start = container_pb2.ExecStart(
            container_id=pending.container_id, exec_id=params.exec_id,
            process=container_pb2.Process(args=r.cmd, env=r.env, cwd=r.working_dir, user=r.user),
            tty=r.tty, stdin=r.attach_stdin, detach=params.detach,
            size=container_pb2.TerminalSize(height=params.size.height, width=params.size.width))
        async for kind, value in self._exec(start, requests):
            if kind == "output":
                yield engine_pb2.ExecStartResponse(output=value)
            elif kind == "exit":
                yield engine_pb2.ExecStartResponse(exit_code=value)

    async def _exec(self, start: container_pb2.ExecStart, requests, quiet: bool = False):
        """Runs an exec on the container service; yields ("output", LogChunk) and ("exit", code)."""
        outgoing: asyncio.Queue = asyncio.Queue()
        outgoing.put_nowait(container_pb2.ExecRequest(start=start))

        async def node_requests():
            while (item := await outgoing.get()) is not _END:
                yield item

        forward = asyncio.ensure_future(_forward(requests, outgoing, container_pb2.ExecRequest))
        exec_id = start.exec_id
        if quiet:
            self._quiet.add(exec_id)
        self._starting.add(exec_id)
        started = False
        try:
            async for reply in self._c.Exec(node_requests()):
                kind = reply.WhichOneof("msg")
                if kind == "started":
                    started = True
                    self._announce_start(exec_id, start.container_id)
                elif kind == "output":
                    yield "output", engine_pb2.LogChunk(stream=reply.output.stream, data=reply.output.data)
                elif kind == "exit_code":
                    yield "exit", reply.exit_code
        finally:
            forward.cancel()
            outgoing.put_nowait(_END)
            if not started:
                self._starting.discard(exec_id)
                self._quiet.discard(exec_id)

    def _announce_start(self, exec_id: str, cid: str) -> None:
        self._starting.discard(exec_id)
        if exec_id not in self._quiet:
            _, cmd = self._cmds.get(exec_id, (cid, ""))
            self._publish(f"exec_start: {cmd}", cid, execID=exec_id)
        early = self._early.pop(exec_id, None)
        if early is not None:
            self.on_exec_exit(early)

    def on_exec_exit(self, event: container_pb2.TaskEvent) -> None:
        """The container service's TYPE_EXEC_EXIT: publish exec_die (after exec_start)."""
        if event.exec_id in self._starting:
            self._early[event.exec_id] = event
            return
        self._cmds.pop(event.exec_id, None)
        if event.exec_id in self._quiet:
            self._quiet.discard(event.exec_id)
            return
        self._publish("exec_die", event.container_id, execID=event.exec_id,
                      exitCode=str(event.exit_code))

    async def run_exec(self, cid: str, argv: list[str], timeout: float) -> tuple[int, str]:
        """Runs argv in a running container to its end: (exit code, stdout+stderr as text).

        No events (healthchecks would flood the log). Raises TimeoutError after
        `timeout` seconds (the process is left to finish on its own) and
        FailedPrecondition when the container does not run."""
        start = container_pb2.ExecStart(container_id=cid, exec_id=secrets.token_hex(32),
                                        process=container_pb2.Process(args=argv))
        output: list[bytes] = []
        code = -1

        async def collect():
            nonlocal code
            async for kind, value in self._exec(start, _no_requests(), quiet=True):
                if kind == "output":
                    output.append(value.data)
                else:
                    code = value
        await asyncio.wait_for(collect(), timeout)
        return code, b"".join(output).decode(errors="replace")

    # -- attach -------------------------------------------------------------------------

    async def attach(self, requests) -> AsyncIterator[engine_pb2.AttachResponse]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "start":
            raise errors.InvalidArgument("the first message must be start")
        params = first.start
        c = await self._gw._get(params.container)
        cid = c.id
        meta = convert.Metadata.decode(c.metadata)
        outgoing: asyncio.Queue = asyncio.Queue()
        outgoing.put_nowait(container_pb2.AttachRequest(start=container_pb2.AttachStart(
            container_id=cid, stdin=params.stdin,
            size=container_pb2.TerminalSize(height=params.size.height, width=params.size.width))))

        async def node_requests():
            while (item := await outgoing.get()) is not _END:
                yield item

        forward = asyncio.ensure_future(_forward(requests, outgoing, container_pb2.AttachRequest))
        finished = False
        try:
            async for reply in self._c.Attach(node_requests()):
                if reply.WhichOneof("msg") == "attached":
                    self._gw._remember(c)
                    self._publish("attach", cid)
                    yield engine_pb2.AttachResponse(attached=cid)
                    if params.start_container:
                        await self._gw._start(cid)
                elif reply.WhichOneof("msg") == "output":
                    yield engine_pb2.AttachResponse(output=engine_pb2.LogChunk(
                        stream=reply.output.stream, data=reply.output.data))
            if params.start_container:
                status = await self._c.Wait(container_pb2.WaitRequest(id=cid))
                if meta.auto_remove:
                    await self._gw._remove_quietly(cid)
                finished = True
                yield engine_pb2.AttachResponse(exit=engine_pb2.ExitStatus(
                    exit_code=status.exit_code, oom_killed=status.oom_killed))
            finished = True
        finally:
            forward.cancel()
            outgoing.put_nowait(_END)
            if params.start_container and not finished:
                self._publish("detach", cid)
                if meta.auto_remove:
                    # Detached (or the client went away): removed when it exits, as run -d --rm.
                    self._gw._auto_remove.add(cid)
                    self._gw._spawn(self._gw._remove_when_exited(cid))

    # -- pause, top, stats, update ------------------------------------------------------

    async def pause(self, ref: str) -> None:
        c = await self._gw._get(ref)
        await self._c.Pause(container_pb2.PauseRequest(id=c.id))
        self._gw._remember(c)
        self._publish("pause", c.id)

    async def unpause(self, ref: str) -> None:
        c = await self._gw._get(ref)
        await self._c.Resume(container_pb2.PauseRequest(id=c.id))
        self._gw._remember(c)
        self._publish("unpause", c.id)

    async def top(self, request: engine_pb2.TopRequest) -> engine_pb2.TopResponse:
        c = await self._gw._get(request.id)
        if c.status not in (container_pb2.STATUS_RUNNING, container_pb2.STATUS_PAUSED):
            raise errors.FailedPrecondition(f"container {c.id} is not running")
        reply = await self._c.Top(container_pb2.TopRequest(id=c.id, ps_args=request.ps_args))
        self._publish("top", c.id)
        return engine_pb2.TopResponse(titles=reply.titles, processes=[
            engine_pb2.StringList(values=row.columns) for row in reply.processes])

    async def stats(self, ref: str, stream: bool) -> AsyncIterator[engine_pb2.ContainerStats]:
        c = await self._gw._get(ref)
        name = convert.display_name(c.name)
        previous = None
        interval = STATS_INTERVAL_MS if stream else int(STATS_PREREAD * 1000)
        count = 0
        async for s in self._c.Stats(container_pb2.StatsRequest(id=c.id, interval_ms=interval)):
            count += 1
            out = _stats(c.id, name, s, previous)
            previous = s
            if stream or count == 2 or c.status not in (container_pb2.STATUS_RUNNING,
                                                         container_pb2.STATUS_PAUSED):
                yield out
                if not stream:
                    return
        if not stream and count == 1:
            yield out

    async def update(self, request: engine_pb2.UpdateResourcesRequest) -> None:
        fields, resources = [], container_pb2.Resources()
        for field in ("memory_bytes", "nano_cpus", "cpu_shares", "pids_limit"):
            if request.HasField(field):
                value = getattr(request, field)
                if value < 0:
                    raise errors.InvalidArgument(
                        f"invalid {field.replace('_', ' ')} {value}: must not be negative")
                fields.append(field)
                setattr(resources, field, value)
        if not fields:
            raise errors.InvalidArgument("you must provide one or more flags when using this command")
        c = await self._gw._get(request.id)
        await self._c.Update(container_pb2.UpdateRequest(id=c.id, resources=resources, fields=fields))
        # The new limits are the container's config from now on: inspect shows
        # them and a later start applies them.
        meta = convert.Metadata.decode(c.metadata)
        config = engine_pb2.ContainerConfig()
        config.CopyFrom(meta.config)
        for field in fields:
            setattr(config, field, getattr(request, field))
        await self._c.SetMetadata(container_pb2.SetMetadataRequest(
            id=c.id, metadata=dataclasses.replace(meta, config=config).encode()))
        self._gw._remember(c)
        self._publish("update", c.id)

    # -- files ----------------------------------------------------------------------------

    async def copy_from(self, ref: str, path: str) -> AsyncIterator[bytes]:
        c = await self._gw._get(ref)
        async for chunk in self._c.CopyOut(container_pb2.CopyOutRequest(id=c.id, path=path)):
            yield chunk.data
        self._gw._remember(c)
        self._publish("archive-path", c.id)

    async def copy_to(self, requests) -> None:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "header":
            raise errors.InvalidArgument("the first message must be header")
        c = await self._gw._get(first.header.id)

        async def node_requests():
            yield container_pb2.CopyInRequest(header=container_pb2.CopyInHeader(
                id=c.id, path=first.header.path))
            async for req in requests:
                yield container_pb2.CopyInRequest(chunk=req.chunk)
        await self._c.CopyIn(node_requests())
        self._gw._remember(c)
        self._publish("extract-to-dir", c.id)

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        c = await self._gw._get(ref)
        async for chunk in self._c.Export(container_pb2.ExportRequest(id=c.id)):
            yield chunk.data
        self._gw._remember(c)
        self._publish("export", c.id)


def _stats(cid: str, name: str, s, previous) -> engine_pb2.ContainerStats:
    cpu = 0.0
    if previous is not None:
        d_cpu = s.cpu_usage_ns - previous.cpu_usage_ns
        d_sys = s.system_cpu_ns - previous.system_cpu_ns
        if d_cpu > 0 and d_sys > 0:
            cpu = d_cpu / d_sys * (s.online_cpus or 1) * 100.0
    return engine_pb2.ContainerStats(
        id=cid, name=name, time=s.time, cpu_percent=cpu, memory_usage=s.memory_usage,
        memory_limit=s.memory_limit, pids=s.pids, net_rx_bytes=s.net_rx_bytes,
        net_tx_bytes=s.net_tx_bytes, block_read_bytes=s.block_read_bytes,
        block_write_bytes=s.block_write_bytes, cpu_usage_ns=s.cpu_usage_ns,
        system_cpu_ns=s.system_cpu_ns, online_cpus=s.online_cpus)


async def _forward(requests, outgoing: asyncio.Queue, message) -> None:
    """Client stdin/resize/close_stdin, re-wrapped for the container service."""
    with contextlib.suppress(asyncio.CancelledError):
        async for req in requests:
            kind = req.WhichOneof("msg")
            if kind == "stdin":
                outgoing.put_nowait(message(stdin=req.stdin))
            elif kind == "resize":
                outgoing.put_nowait(message(resize=container_pb2.TerminalSize(
                    height=req.resize.height, width=req.resize.width)))
            elif kind == "close_stdin":
                outgoing.put_nowait(message(close_stdin=True))


async def _no_requests():
    return
    yield  # an empty async iterator


def check_signal(text: str) -> None:
    """InvalidArgument for a signal that is neither a known name nor a valid number."""
    import signal as signal_mod
    s = text.strip().upper()
    if s.isdigit():
        if 0 < int(s) <= signal_mod.SIGRTMAX:
            return
    elif (s if s.startswith("SIG") else f"SIG{s}") in signal_mod.Signals.__members__:
        return
    raise errors.InvalidArgument(f"Invalid signal: {text}")
