"""Execs and attach: processes run in a container, and a container's own stdio.

The container service does the work; the gateway adds what users see: names
resolved to ids, exec records between ExecCreate and ExecStart (nothing runs
yet, so nothing is on the node), docker's event names, auto-removal after an
attached `run -it --rm`.

Events, in the order they happen for one exec:

    exec_create: <cmd>   ExecCreate recorded it (published here)
    exec_start: <cmd>    the container service's TYPE_EXEC_START  } published by
    exec_die             its TYPE_EXEC_EXIT (execID, exitCode)     } backends/task_events.py

The node's stream orders exec start before exec exit, so exec_die never comes
first. ExecStart answers its exit code only once exec_die was published.

For other backends (the healthcheck monitor) `run_exec` runs a command to its
end and returns its exit code and output, with no events.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.types.v1 import stdio_pb2
from services.common import errors
from services.gateway.backends.task_events import ExecInfo

log = structlog.get_logger(__name__)

_END = object()


@dataclass
class _PendingExec:
    container_id: str
    request: engine_pb2.CreateExecRequest


def _pending_info(exec_id: str, pending, running: bool) -> engine_pb2.ExecInfo:
    r = pending.request
    return engine_pb2.ExecInfo(id=exec_id, container_id=pending.container_id, cmd=r.cmd, tty=r.tty,
                               open_stdin=r.attach_stdin, user=r.user, working_dir=r.working_dir,
                               running=running)


class Execs:
    """`container` is the container service client; `containers` the containers backend
    (get, record, start, publish, attached/detached, remove_quietly); `task_events` the
    follower whose exec events ExecStart waits for; `store` keeps users' execs."""

    def __init__(self, container, containers, task_events, store):
        self._c = container
        self._containers = containers
        self._task_events = task_events
        self._store = store
        self._pending: dict[str, _PendingExec] = {}
        # Started, but perhaps not yet known to the container service: an inspect in that
        # window (dockerpty's, right after the hijacked start) still finds them.
        self._starting: dict[str, _PendingExec] = {}
        # Execs the task events may still report: for their event's command, or silence.
        self._known: dict[str, ExecInfo] = {}

    def info(self, exec_id: str) -> ExecInfo | None:
        known = self._known.get(exec_id)
        if known is None and self._store is not None:
            # Started before a gateway restart: its events are replayed now.
            row = self._store.get_exec(exec_id)
            if row is not None:
                known = ExecInfo(row[0], row[1], quiet=False)
        return known

    def ended(self, exec_id: str) -> None:
        info = self._known.pop(exec_id, None)
        if self._store is not None and (info is None or not info.quiet):
            self._store.delete_exec(exec_id)

    # -- exec -------------------------------------------------------------------------

    async def create(self, request: engine_pb2.CreateExecRequest) -> str:
        c = await self._containers.get(request.container)
        if c.status != container_pb2.STATUS_RUNNING:
            if c.status == container_pb2.STATUS_PAUSED:
                raise errors.FailedPrecondition(
                    f"Container {c.id} is paused, unpause the container before exec")
            raise errors.FailedPrecondition(f"container {c.id} is not running")
        if not request.cmd:
            raise errors.InvalidArgument("No exec command specified")
        exec_id = secrets.token_hex(32)
        self._pending[exec_id] = _PendingExec(c.id, request)
        cmd = " ".join(request.cmd)
        self._known[exec_id] = ExecInfo(c.id, cmd, quiet=False)
        if self._store is not None:
            self._store.put_exec(exec_id, c.id, cmd)
        self._containers.publish(f"exec_create: {cmd}", c.id, execID=exec_id)
        return exec_id

    async def inspect(self, exec_id: str) -> engine_pb2.ExecInfo:
        pending = self._pending.get(exec_id)
        if pending is not None:
            return _pending_info(exec_id, pending, running=False)
        try:
            info = (await self._c.GetExec(container_pb2.GetExecRequest(exec_id=exec_id))).exec
        except errors.NotFound:
            starting = self._starting.get(exec_id)
            if starting is None:
                raise
            return _pending_info(exec_id, starting, running=True)
        return engine_pb2.ExecInfo(
            id=info.id, container_id=info.container_id, cmd=info.process.args, tty=info.tty,
            open_stdin=info.stdin, running=info.running, exited=info.exited,
            exit_code=info.exit_code, pid=info.pid, user=info.process.user,
            working_dir=info.process.cwd)

    async def start(self, requests) -> AsyncIterator[engine_pb2.StartExecResponse]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "start":
            raise errors.InvalidArgument("the first message must be start")
        params = first.start
        pending = self._pending.pop(params.exec_id, None)
        if pending is None:
            with contextlib.suppress(errors.NotFound):
                await self._c.GetExec(container_pb2.GetExecRequest(exec_id=params.exec_id))
                raise errors.Conflict(f"Exec {params.exec_id} has already been started")
            raise errors.NotFound(f"No such exec instance: {params.exec_id}")
        self._starting[params.exec_id] = pending
        try:
            async for response in self._start(params, pending, requests):
                yield response
        finally:
            self._starting.pop(params.exec_id, None)

    async def _start(self, params, pending, requests) -> AsyncIterator[engine_pb2.StartExecResponse]:
        r = pending.request
        start = container_pb2.ExecStart(
            container_id=pending.container_id, exec_id=params.exec_id,
            process=container_pb2.Process(args=r.cmd, env=r.env, cwd=r.working_dir, user=r.user),
            tty=r.tty, stdin=r.attach_stdin, detach=params.detach,
            size=stdio_pb2.TerminalSize(height=params.size.height, width=params.size.width))
        async for kind, value in self._exec(start, requests):
            if kind == "output":
                yield engine_pb2.StartExecResponse(output=value)
            elif kind == "exit":
                yield engine_pb2.StartExecResponse(exit_code=value)

    async def _exec(self, start: container_pb2.ExecStart, requests, quiet: bool = False):
        """Runs an exec on the container service; yields ("output", OutputChunk) and ("exit", code)."""
        outgoing: asyncio.Queue = asyncio.Queue()
        outgoing.put_nowait(container_pb2.ExecProcessRequest(start=start))

        async def node_requests():
            while (item := await outgoing.get()) is not _END:
                yield item

        forward = asyncio.ensure_future(_forward(requests, outgoing, container_pb2.ExecProcessRequest))
        exec_id = start.exec_id
        if quiet:
            self._known[exec_id] = ExecInfo(start.container_id, " ".join(start.process.args), quiet=True)
        mark = self._task_events.mark(exec_id)
        started = False
        try:
            async for reply in self._c.ExecProcess(node_requests()):
                kind = reply.WhichOneof("msg")
                if kind == "started":
                    started = True
                    if not quiet:
                        await self._task_events.wait(exec_id, "start", mark)
                elif kind == "output":
                    yield "output", reply.output
                elif kind == "exit_code":
                    if not quiet:
                        # Answered once exec_die is out: a client's next call comes after it.
                        await self._task_events.wait(exec_id, "exit", mark)
                    yield "exit", reply.exit_code
        finally:
            forward.cancel()
            outgoing.put_nowait(_END)
            if not started:
                self.ended(exec_id)
            self._task_events.forget(exec_id)

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

    async def attach(self, requests, next_run: bool = False
                     ) -> AsyncIterator[engine_pb2.AttachContainerResponse]:
        """The container's own stdio (containers.stdio): `attached`, its output, and `exit`
        when its process ended while attached.

        With start_container the container is started once the attach is in place (a
        stopped one is attached to its next run first, so no byte is missed), removed
        after its exit when it has auto_remove, and the stream always ends with `exit`.
        `next_run` (docker's attach, which `docker start -a` sends before its start)
        attaches a stopped container to its next run instead of refusing it."""
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "start":
            raise errors.InvalidArgument("the first message must be start")
        params = first.start
        c, record = await self._containers.record(params.container)
        cid = c.id
        stopped = c.status == container_pb2.STATUS_STOPPED
        outgoing: asyncio.Queue = asyncio.Queue()

        async def node_requests():
            while (item := await outgoing.get()) is not _END:
                yield item

        forward = asyncio.ensure_future(_forward(requests, outgoing, container_pb2.AttachContainerRequest))
        output = self._containers.stdio(
            cid, node_requests(), stdin=params.stdin,
            size=stdio_pb2.TerminalSize(height=params.size.height, width=params.size.width),
            next_run=stopped and (params.start_container or next_run))
        finished = False
        if params.start_container and record.auto_remove:
            self._containers.attached(cid)
        try:
            status = None
            async for reply in output:
                kind = reply.WhichOneof("msg")
                if kind == "attached":
                    self._containers.publish("attach", cid)
                    yield engine_pb2.AttachContainerResponse(attached=cid)
                    if params.start_container:
                        await self._containers.start(cid)
                elif kind == "output":
                    yield engine_pb2.AttachContainerResponse(output=reply.output)
                elif kind == "exit":
                    status = engine_pb2.ExitStatus(exit_code=reply.exit.exit_code,
                                                   oom_killed=reply.exit.oom_killed)
            if params.start_container:
                if status is None:
                    # Cut short (the monitor died): the exit as recorded.
                    status = await self._containers.wait(cid)
                if record.auto_remove:
                    await self._containers.remove_quietly(cid)
            finished = True
            if status is not None:
                yield engine_pb2.AttachContainerResponse(exit=status)
        finally:
            forward.cancel()
            outgoing.put_nowait(_END)
            await output.aclose()
            if params.start_container and not finished:
                self._containers.publish("detach", cid)
            if params.start_container and record.auto_remove:
                # Detached (or the client went away): removed when it exits, as run -d --rm.
                self._containers.detached(cid, remove_at_exit=not finished)


async def _forward(requests, outgoing: asyncio.Queue, message) -> None:
    """Client stdin/resize/close_stdin, re-wrapped for the container service."""
    with contextlib.suppress(asyncio.CancelledError):
        async for req in requests:
            kind = req.WhichOneof("msg")
            if kind == "stdin":
                outgoing.put_nowait(message(stdin=req.stdin))
            elif kind == "resize":
                outgoing.put_nowait(message(resize=stdio_pb2.TerminalSize(
                    height=req.resize.height, width=req.resize.width)))
            elif kind == "close_stdin":
                outgoing.put_nowait(message(close_stdin=True))


async def _no_requests():
    return
    yield  # an empty async iterator
