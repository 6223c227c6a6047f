"""Processes, terminals and files: exec, interactive attach, resize, pause, top, stats, cp, export,
changes, update, rename, commit.

The Docker API splits into separate requests what berth's gateway takes as one
bidirectional stream (`gw.depth.exec_start`, `gw.depth.attach`): the hijacked
connection carries stdin and output, and `POST .../resize` arrives on another
connection. So each open session registers a queue of requests under its exec or
container id; its stdin pump and any resize request feed that queue, and the
stream handed to the gateway is read from it:

    POST /exec/{id}/start   ──► start message ─┐
    hijacked socket: stdin  ──► stdin ...      ├──► queue ──► gw.depth.exec_start(requests)
    POST /exec/{id}/resize  ──► resize ────────┘
    client half-close       ──► close_stdin (exec -i, and containers created with StdinOnce)

A stream that ends without close_stdin means "detached" to the gateway, so the queue
ends only when the session does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import tarfile

import structlog
from aiohttp import web

from berth.engine.v1 import engine_pb2
from services.common import errors
from services.gateway import restart as restart_mod
from services.gateway import system
from berth_docker import api as convert
from services.gateway.docker.context import (API_VERSION_KEY, FAILED_EXECS_KEY, RESIZE_KEY, gateway, json_body,
                                             json_response, long_lived)
from berth_errors import not_implemented
from services.gateway.docker.hijack import STDERR, STDOUT, Hijacked, frame, stream_content_type

log = structlog.get_logger(__name__)

_END = object()
_STREAMS = {1: STDOUT, 2: STDERR}
# Execs whose start failed (command not found...), kept for their exit code; the oldest go first.
_FAILED_EXECS_KEPT = 1000
# How much of an archive may precede the first member's header (PAX/long-name records).
_STAT_PREFIX_LIMIT = 1 << 20


def register(router) -> None:
    router.add("POST", "/containers/{id}/exec", exec_create)
    router.add("POST", "/exec/{id}/start", exec_start)
    router.add("POST", "/exec/{id}/resize", exec_resize)
    router.add("GET", "/exec/{id}/json", exec_inspect)
    router.add("POST", "/containers/{id}/resize", container_resize)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("GET", "/containers/{id}/top", top)
    router.add("GET", "/containers/{id}/stats", stats)
    router.add("GET", "/containers/{id}/archive", archive_get)  # HEAD too: the stat alone
    router.add("PUT", "/containers/{id}/archive", archive_put)
    router.add("GET", "/containers/{id}/export", export)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("POST", "/containers/{id}/update", update)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("POST", "/commit", commit)


# -- sessions: one queue of requests per open stream --------------------------------------

class _Session:
    """The request stream of one exec or attach, fed by stdin, resizes and the client's EOF."""

    def __init__(self, message, first):
        self._message = message  # engine_pb2.ExecStartRequest or engine_pb2.AttachRequest
        self._queue: asyncio.Queue = asyncio.Queue()
        self._queue.put_nowait(first)

    async def requests(self):
        while (item := await self._queue.get()) is not _END:
            yield item

    def resize(self, height: int, width: int) -> None:
        self._queue.put_nowait(self._message(resize=engine_pb2.TerminalSize(height=height, width=width)))

    def end(self) -> None:
        self._queue.put_nowait(_END)

    async def pump_stdin(self, hijacked: Hijacked, close_on_eof: bool) -> None:
        while (data := await hijacked.read_stdin()) is not None:
            self._queue.put_nowait(self._message(stdin=data))
        if close_on_eof:
            self._queue.put_nowait(self._message(close_stdin=True))


@contextlib.contextmanager
def _registered(request: web.Request, key: str, session: _Session):
    sessions = request.app[RESIZE_KEY]
    sessions.setdefault(key, []).append(session)
    try:
        yield
    finally:
        mine = sessions.get(key, [])
        if session in mine:
            mine.remove(session)
        if not mine:
            sessions.pop(key, None)


def _size(request: web.Request) -> tuple[int, int]:
    q = request.query
    height, width = convert.integer(q, "h"), convert.integer(q, "w")
    if height is None or width is None or height < 0 or width < 0:
        raise errors.InvalidArgument("resize needs the h and w parameters")
    return height, width


async def _relay(responses, hijacked: Hijacked, tty: bool, wanted: set[int]) -> None:
    """Output to the client until the stream ends or the client goes away."""
    while True:
        nxt = asyncio.ensure_future(anext(responses, None))
        done, _ = await asyncio.wait([nxt, hijacked.wait_closed()], return_when=asyncio.FIRST_COMPLETED)
        if nxt not in done:
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await nxt
            return
        item = nxt.result()
        if item is None:
            return
        if not item.HasField("output"):
            continue
        chunk = item.output
        if tty:
            await hijacked.write(chunk.data)
            continue
        stream = _STREAMS.get(chunk.stream, STDOUT)
        if stream in wanted:
            await hijacked.write(frame(stream, chunk.data))


async def _interactive(request: web.Request, session: _Session, responses, tty: bool, wanted: set[int],
                       stdin: bool, close_on_eof: bool, what: str, on_error=None) -> web.StreamResponse:
    hijacked = await Hijacked.upgrade(request, stream_content_type(request[API_VERSION_KEY], tty))
    pump = asyncio.ensure_future(session.pump_stdin(hijacked, close_on_eof)) if stdin else None
    with long_lived(request):
        try:
            await _relay(responses, hijacked, tty, wanted)
        except (ConnectionResetError, ConnectionError):
            pass
        except errors.BerthError as exc:
            log.warning(f"{what}_failed", path=request.path, error=exc.message)
            if on_error is not None:
                # After the 101 there is no JSON: the message goes on the stream, as moby writes it.
                message = on_error(exc).encode() + b"\r\n"
                with contextlib.suppress(ConnectionResetError, ConnectionError):
                    await hijacked.write(message if tty else frame(STDOUT, message))
        finally:
            if pump is not None:
                pump.cancel()
            session.end()
            await responses.aclose()
            await hijacked.close()
    return hijacked.response


# -- exec ---------------------------------------------------------------------------------

async def exec_create(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    if body.get("Privileged"):
        raise not_implemented("privileged exec")
    cmd = body.get("Cmd")
    exec_id = await gateway(request).depth.exec_create(engine_pb2.ExecCreateRequest(
        container=request.match_info["id"], cmd=[cmd] if isinstance(cmd, str) else (cmd or []),
        env=body.get("Env") or [], working_dir=body.get("WorkingDir") or "", user=body.get("User") or "",
        tty=bool(body.get("Tty")), attach_stdin=bool(body.get("AttachStdin"))))
    return json_response({"Id": exec_id}, status=201)


async def exec_inspect(request: web.Request) -> web.Response:
    failed = request.app[FAILED_EXECS_KEY].get(request.match_info["id"])
    if failed is not None:
        return json_response(convert.exec_json(failed))
    info = await gateway(request).depth.exec_inspect(request.match_info["id"])
    return json_response(convert.exec_json(info))


async def exec_start(request: web.Request) -> web.StreamResponse:
    # The body first: after the takeover nothing reads it (measured, see hijack.py).
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    gw, exec_id = gateway(request), request.match_info["id"]
    info = await gw.depth.exec_inspect(exec_id)  # 404 as JSON, before any upgrade
    if info.running or info.exited:
        raise errors.Conflict(f"Exec {exec_id} has already been started")
    detach = bool(body.get("Detach"))
    size = body.get("ConsoleSize") or [0, 0]
    params = engine_pb2.ExecStartParams(exec_id=exec_id, detach=detach)
    if len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        params.size.height, params.size.width = size
    session = _Session(engine_pb2.ExecStartRequest, engine_pb2.ExecStartRequest(start=params))
    responses = gw.depth.exec_start(session.requests())
    if detach:
        # `docker exec -d`: a plain 200 once it runs; nothing is hijacked.
        session.end()
        try:
            async for _ in responses:
                pass
        finally:
            await responses.aclose()
        return web.Response(status=200)
    failed = request.app[FAILED_EXECS_KEY]

    def on_error(exc: errors.BerthError) -> str:
        # The exec never ran, so the container service has no record: keep its end here,
        # with the code a shell would give (127 not found, 126 cannot run), as docker does.
        not_found = "not found" in exc.message or "no such file" in exc.message.lower()
        failed[exec_id] = engine_pb2.ExecInfo(
            id=exec_id, container_id=info.container_id, cmd=info.cmd, tty=info.tty,
            open_stdin=info.open_stdin, exited=True, exit_code=127 if not_found else 126,
            user=info.user, working_dir=info.working_dir)
        while len(failed) > _FAILED_EXECS_KEPT:
            failed.pop(next(iter(failed)))
        return exc.message

    with _registered(request, exec_id, session):
        return await _interactive(request, session, responses, info.tty, {STDOUT, STDERR},
                                  stdin=info.open_stdin, close_on_eof=True, what="exec", on_error=on_error)


async def exec_resize(request: web.Request) -> web.Response:
    height, width = _size(request)
    exec_id = request.match_info["id"]
    sessions = request.app[RESIZE_KEY].get(exec_id)
    if not sessions:
        info = await gateway(request).depth.exec_inspect(exec_id)  # 404 for unknown ones
        if not info.running:
            raise errors.Conflict(f"Exec {exec_id} is not running")
        return web.Response(status=200)  # started by another client: its own terminal sizes it
    for s in sessions:
        s.resize(height, width)
    return web.Response(status=200)


# -- attach with stdin, or to a TTY -----------------------------------------------------

async def attach_interactive(request: web.Request, info: engine_pb2.ContainerInfo, stdin: bool,
                             wanted: set[int]) -> web.StreamResponse:
    """`docker run -i/-t`, `docker attach`: the container's own stdio through conmon.

    The node attach is in place before the 101 goes out, and the CLI starts the
    container only after the 101, so no output is lost."""
    gw, cfg = gateway(request), info.config
    stdin = stdin and cfg.open_stdin
    session = _Session(engine_pb2.AttachRequest, engine_pb2.AttachRequest(
        start=engine_pb2.AttachParams(container=info.id, stdin=stdin)))
    responses = gw.depth.attach(session.requests())
    try:
        first = await anext(responses, None)  # "attached", or an error as JSON
    except BaseException:
        session.end()
        await responses.aclose()
        raise
    if first is None:
        raise errors.Conflict("You cannot attach to a stopped container, start it first")
    with _registered(request, info.id, session):
        # docker closes the process's stdin at the client's EOF only for StdinOnce containers
        # (`run -i`); `docker attach` to a `run -d -i` one leaves it open for the next client.
        return await _interactive(request, session, responses, cfg.tty, wanted,
                                  stdin=stdin, close_on_eof=cfg.stdin_once, what="attach")


async def container_resize(request: web.Request) -> web.Response:
    height, width = _size(request)
    gw = gateway(request)
    info = await gw.inspect(request.match_info["id"])
    if not info.state.running:
        raise errors.Conflict(f"Container {info.id} is not running")
    sessions = request.app[RESIZE_KEY].get(info.id)
    if sessions:
        for s in sessions:
            s.resize(height, width)
    elif info.config.tty:
        # No session of ours: a short attach carries the size to conmon, then detaches.
        responses = gw.depth.attach(_once(engine_pb2.AttachRequest(start=engine_pb2.AttachParams(
            container=info.id, size=engine_pb2.TerminalSize(height=height, width=width)))))
        try:
            await anext(responses, None)
        finally:
            await responses.aclose()
    return web.Response(status=200)


async def _once(message):
    yield message


# -- pause, top, stats ----------------------------------------------------------------------

async def pause(request: web.Request) -> web.Response:
    await gateway(request).depth.pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await gateway(request).depth.unpause(request.match_info["id"])
    return web.Response(status=204)


async def top(request: web.Request) -> web.Response:
    ps_args = request.query.get("ps_args", "").split()
    reply = await gateway(request).depth.top(engine_pb2.TopRequest(id=request.match_info["id"], ps_args=ps_args))
    return json_response({"Titles": list(reply.titles), "Processes": [list(p.values) for p in reply.processes]})


async def stats(request: web.Request) -> web.StreamResponse:
    """docker's stats JSON; precpu_stats is the sample before, so clients compute CPU % themselves.

    stream=false answers one message with both samples filled, as dockerd does
    (one-shot=true: a single sample, precpu empty)."""
    q = request.query
    stream = convert.flag(q, "stream", default=True)
    one_shot = convert.flag(q, "one-shot") and not stream
    gw = gateway(request)
    info = await gw.inspect(request.match_info["id"])  # 404 before any header
    samples = gw.depth.stats(info.id, True)
    try:
        if not stream:
            previous = None
            async for s in samples:
                if one_shot or previous is not None or not info.state.running:
                    return json_response(convert.stats_json(s, previous if not one_shot else None))
                previous = s
            return json_response(convert.stats_json(previous, None) if previous is not None
                                 else convert.stats_json(engine_pb2.ContainerStats(
                                     id=info.id, name=info.name), None))
        first = await anext(samples, None)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with long_lived(request):
            previous, current = None, first
            try:
                while current is not None:
                    await response.write(json.dumps(convert.stats_json(current, previous)).encode() + b"\n")
                    previous, current = current, await anext(samples, None)
            except (ConnectionResetError, ConnectionError):
                return response
        await response.write_eof()
        return response
    finally:
        await samples.aclose()


# -- files ------------------------------------------------------------------------------------

async def _first_member(chunks) -> tuple[tarfile.TarInfo, list[bytes]]:
    """Reads the archive until its first member's header: that member is the path asked for."""
    buffered: list[bytes] = []
    size = 0
    async for chunk in chunks:
        buffered.append(chunk)
        size += len(chunk)
        try:
            with tarfile.open(fileobj=io.BytesIO(b"".join(buffered)), mode="r|") as tar:
                member = tar.next()
        except (tarfile.ReadError, EOFError):
            member = None
        if member is not None:
            return member, buffered
        if size > _STAT_PREFIX_LIMIT:
            break
    raise errors.Unavailable("the container service sent no archive for this path")


def _stat_header(member: tarfile.TarInfo) -> str:
    return base64.b64encode(json.dumps(convert.path_stat(member)).encode()).decode()


async def archive_get(request: web.Request) -> web.StreamResponse:
    path = request.query.get("path", "")
    if not path:
        raise errors.InvalidArgument("path is required")
    chunks = gateway(request).depth.copy_from(request.match_info["id"], path)
    try:
        member, buffered = await _first_member(chunks)
        headers = {"X-Docker-Container-Path-Stat": _stat_header(member)}
        if request.method == "HEAD":
            return web.Response(status=200, headers={**headers, "Content-Type": "application/json"})
        response = web.StreamResponse(headers={**headers, "Content-Type": "application/x-tar"})
        await response.prepare(request)
        with long_lived(request):
            try:
                for chunk in buffered:
                    await response.write(chunk)
                async for chunk in chunks:
                    await response.write(chunk)
            except (ConnectionResetError, ConnectionError):
                return response
        await response.write_eof()
        return response
    finally:
        await chunks.aclose()


async def archive_put(request: web.Request) -> web.Response:
    path = request.query.get("path", "")
    if not path:
        raise errors.InvalidArgument("path is required")

    async def requests():
        yield engine_pb2.CopyToContainerRequest(header=engine_pb2.CopyToContainerHeader(
            id=request.match_info["id"], path=path))
        while data := await request.content.read(1 << 20):
            yield engine_pb2.CopyToContainerRequest(chunk=data)
    await gateway(request).depth.copy_to(requests())
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    chunks = gateway(request).depth.export(request.match_info["id"])
    try:
        first = await anext(chunks, None)  # no such container: JSON before the tar starts
        response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
        with long_lived(request):
            try:
                chunk = first
                while chunk is not None:
                    await response.write(chunk)
                    chunk = await anext(chunks, None)
            except (ConnectionResetError, ConnectionError):
                return response
        await response.write_eof()
        return response
    finally:
        await chunks.aclose()


async def changes(request: web.Request) -> web.Response:
    found = await system.diff(gateway(request), request.match_info["id"])
    return json_response([convert.change_json(c) for c in found])


# -- update, rename, commit -------------------------------------------------------------------

async def update(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    gw, ref = gateway(request), request.match_info["id"]
    resources, policy = convert.update_request(ref, body)
    if resources is None and policy is None:
        raise errors.InvalidArgument("you must provide one or more flags when using this command")
    if policy is not None:
        restart_mod.validate(policy)
    if resources is not None:
        await gw.depth.update(resources)
    if policy is not None:
        await restart_mod.update_policy(gw, ref, policy)
    return json_response({"Warnings": []})


async def rename(request: web.Request) -> web.Response:
    await system.rename(gateway(request), request.match_info["id"], request.query.get("name", ""))
    return web.Response(status=204)


async def commit(request: web.Request) -> web.Response:
    q = request.query
    body = await json_body(request, default={})
    if body and any(v not in (None, "", [], {}, False) for v in (body or {}).values()):
        raise not_implemented("a container config in the commit body (use changes)")
    repo, tag = q.get("repo", ""), q.get("tag", "")
    reference = (f"{repo}:{tag}" if tag else repo) if repo else ""
    image_id = await system.commit(gateway(request), q.get("container", ""), reference,
                                   [c for c in q.getall("changes", []) if c], q.get("comment", ""),
                                   q.get("author", ""))
    return json_response({"Id": image_id}, status=201)
