"""Exec and attach routes: the hijacked connections of exec start and attach, resize.

The Docker API splits into separate requests what berth's gateway takes as one
bidirectional stream (`execs.start`, `execs.attach`): the hijacked
connection carries stdin and output, and `POST .../resize` arrives on another
connection. So each open session registers a queue of requests under its exec or
container id; its stdin pump and any resize request feed that queue, and the
stream handed to the backend is read from it:

    POST /exec/{id}/start   ──► start message ─┐
    hijacked socket: stdin  ──► stdin ...      ├──► queue ──► execs.start(requests)
    POST /exec/{id}/resize  ──► resize ────────┘
    client half-close       ──► close_stdin (exec -i, and containers created with StdinOnce)

A stream that ends without close_stdin means "detached" to the backend, so the queue
ends only when the session does. Every attach, with stdin or not, reads the
container's own stdio (never its log), so `docker run` gets every byte, at the
pace the client reads: the hijacked socket's write buffer, the gRPC streams and
conmon's blocking attach socket pass the back-pressure along.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import web

from berth.engine.v1 import engine_pb2
from berth.types.v1 import stdio_pb2
from berth_docker import api as convert
from berth_errors import not_implemented
from services.common import errors
from services.gateway.docker import detach_keys
from services.gateway.docker.context import (API_VERSION_KEY, EXEC_DETACH_KEYS_KEY, FAILED_EXECS_KEY, RESIZE_KEY,
                                             backends, json_body, json_response, long_lived)
from services.gateway.docker.hijack import STDERR, STDOUT, Hijacked, frame, line_frames, stream_content_type

log = structlog.get_logger(__name__)

_END = object()
_STREAMS = {1: STDOUT, 2: STDERR}
# Execs whose start failed (command not found...), kept for their exit code; the oldest go first.
_FAILED_EXECS_KEPT = 1000


def register(router) -> None:
    router.add("POST", "/containers/{id}/exec", exec_create)
    router.add("POST", "/exec/{id}/start", exec_start)
    router.add("POST", "/exec/{id}/resize", exec_resize)
    router.add("GET", "/exec/{id}/json", exec_inspect)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("POST", "/containers/{id}/resize", container_resize)


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
        self._queue.put_nowait(self._message(resize=stdio_pb2.TerminalSize(height=height, width=width)))

    def end(self) -> None:
        self._queue.put_nowait(_END)

    async def pump_stdin(self, hijacked: Hijacked, close_on_eof: bool,
                         scanner: detach_keys.Scanner | None, on_detach=None) -> None:
        """`scanner` (a terminal's): its key sequence closes the client's connection, which
        ends the session without close_stdin, so the process runs on (docker's detach);
        `on_detach()` announces it."""
        while (data := await hijacked.read_stdin()) is not None:
            detached = False
            if scanner is not None:
                data, detached = scanner.feed(data)
            if data:
                self._queue.put_nowait(self._message(stdin=data))
            if detached:
                if on_detach is not None:
                    on_detach()
                await hijacked.close()
                return
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
                       stdin: bool, close_on_eof: bool, what: str, on_error=None,
                       before=None, scanner: detach_keys.Scanner | None = None,
                       on_detach=None) -> web.StreamResponse:
    """`before(hijacked)`, when given, writes first (attach's logs=1); `scanner` watches
    stdin for the detach keys, `on_detach()` announces them."""
    hijacked = await Hijacked.upgrade(request, stream_content_type(request[API_VERSION_KEY], tty))
    pump = asyncio.ensure_future(session.pump_stdin(hijacked, close_on_eof, scanner, on_detach)) if stdin else None
    with long_lived(request):
        try:
            if before is not None:
                await before(hijacked)
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


async def exec_create(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    if body.get("Privileged"):
        raise not_implemented("privileged exec")
    cmd = body.get("Cmd")
    keys = _exec_detach_keys(body)
    exec_id = await backends(request).execs.create(engine_pb2.CreateExecRequest(
        container=request.match_info["id"], cmd=[cmd] if isinstance(cmd, str) else (cmd or []),
        env=body.get("Env") or [], working_dir=body.get("WorkingDir") or "", user=body.get("User") or "",
        tty=bool(body.get("Tty")), attach_stdin=bool(body.get("AttachStdin"))))
    if keys is not None:
        kept = request.app[EXEC_DETACH_KEYS_KEY]
        kept[exec_id] = keys
        while len(kept) > _FAILED_EXECS_KEPT:  # created and never started: the oldest go first
            kept.pop(next(iter(kept)))
    return json_response({"Id": exec_id}, status=201)


def _exec_detach_keys(body: dict) -> bytes | None:
    """The exec's own detach keys, None for the default. moby decodes the body's names
    without regard to case, and docker-py sends the client config's as `detachKeys`."""
    spec = next((v for k, v in body.items() if k.lower() == "detachkeys"), None)
    if spec in (None, ""):
        return None
    if not isinstance(spec, str):
        raise errors.InvalidArgument("DetachKeys must be a string")
    return detach_keys.parse(spec, "escape keys")


async def exec_inspect(request: web.Request) -> web.Response:
    failed = request.app[FAILED_EXECS_KEY].get(request.match_info["id"])
    if failed is not None:
        return json_response(convert.exec_json(failed))
    info = await backends(request).execs.inspect(request.match_info["id"])
    return json_response(convert.exec_json(info))


async def exec_start(request: web.Request) -> web.StreamResponse:
    # The body first: after the takeover nothing reads it (measured, see hijack.py).
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    execs, exec_id = backends(request).execs, request.match_info["id"]
    info = await execs.inspect(exec_id)  # 404 as JSON, before any upgrade
    if info.running or info.exited:
        raise errors.Conflict(f"Exec {exec_id} has already been started")
    detach = bool(body.get("Detach"))
    size = body.get("ConsoleSize") or [0, 0]
    params = engine_pb2.ExecStartParams(exec_id=exec_id, detach=detach)
    if len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        params.size.height, params.size.width = size
    keys = request.app[EXEC_DETACH_KEYS_KEY].pop(exec_id, None)
    session = _Session(engine_pb2.StartExecRequest, engine_pb2.StartExecRequest(start=params))
    responses = execs.start(session.requests())
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

    # Framed or raw as the start request says (moby decides by the start's Tty, not the
    # exec's: docker-py starts a tty exec with Tty false and reads frames); the docker
    # CLI sends the exec's own value.
    raw = bool(body["Tty"]) if "Tty" in body else info.tty
    # The exec's terminal, not the start's framing, decides whether keys detach (as moby).
    scanner = detach_keys.Scanner(detach_keys.DEFAULT_KEYS if keys is None else keys) if info.tty else None
    with _registered(request, exec_id, session):
        return await _interactive(request, session, responses, raw, {STDOUT, STDERR},
                                  stdin=info.open_stdin, close_on_eof=True, what="exec", on_error=on_error,
                                  scanner=scanner, on_detach=lambda: backends(request).containers.publish(
                                      "exec_detach", info.container_id, execID=exec_id))


async def exec_resize(request: web.Request) -> web.Response:
    height, width = _size(request)
    exec_id = request.match_info["id"]
    sessions = request.app[RESIZE_KEY].get(exec_id)
    if not sessions:
        info = await backends(request).execs.inspect(exec_id)  # 404 for unknown ones
        if not info.running:
            raise errors.Conflict(f"Exec {exec_id} is not running")
        return web.Response(status=200)  # started by another client: its own terminal sizes it
    for s in sessions:
        s.resize(height, width)
    return web.Response(status=200)


async def attach(request: web.Request) -> web.StreamResponse:
    q = request.query
    wanted = {s for s, on in ((STDOUT, convert.flag(q, "stdout")), (STDERR, convert.flag(q, "stderr"))) if on}
    stream, logs = convert.flag(q, "stream"), convert.flag(q, "logs")
    if not stream and not logs:
        raise errors.InvalidArgument("Bad parameters: you must choose at least one of stream or logs")
    keys = detach_keys.parse(q["detachKeys"]) if q.get("detachKeys") else detach_keys.DEFAULT_KEYS
    b, ref = backends(request), request.match_info["id"]
    # Known errors (no such container) before the upgrade: after it, they have no JSON.
    info = await b.containers.inspect(ref)
    if not stream:
        hijacked = await Hijacked.upgrade(request, stream_content_type(request[API_VERSION_KEY], info.config.tty))
        with long_lived(request):
            try:
                await _replay_log(b.containers, info, hijacked, wanted)
            except (ConnectionResetError, ConnectionError):
                pass
            finally:
                await hijacked.close()
        return hijacked.response
    return await attach_interactive(request, info, convert.flag(q, "stdin"), wanted, logs=logs, keys=keys)


async def _replay_log(containers, info: engine_pb2.ContainerInfo, hijacked: Hijacked, wanted: set[int]) -> None:
    """attach's logs=1: what the container wrote so far, from its log."""
    chunks = containers.logs(info.id, False, -1, None, None, chunked=True)
    try:
        async for chunk in chunks:
            stream = _STREAMS.get(chunk.stream, STDOUT)
            if info.config.tty:
                await hijacked.write(chunk.data)
            elif stream in wanted:
                await hijacked.write(line_frames(stream, chunk.data))
    except errors.NotImplementedYet:
        pass  # log driver "none": nothing to replay, the stream still comes
    finally:
        await chunks.aclose()


async def attach_interactive(request: web.Request, info: engine_pb2.ContainerInfo, stdin: bool,
                             wanted: set[int], logs: bool = False, keys: bytes = b"") -> web.StreamResponse:
    """`docker run`, `docker start -a`, `docker attach`: the container's own stdio through
    conmon, with back-pressure (a client that reads slowly slows the container).

    The node attach is in place before the 101 goes out, and the CLI starts the
    container only after the 101, so no output is lost; a stopped container is
    attached to its next run (`docker start -a` attaches, then starts). `keys` detach a
    terminal's client."""
    cfg = info.config
    stdin = stdin and cfg.open_stdin
    session = _Session(engine_pb2.AttachContainerRequest, engine_pb2.AttachContainerRequest(
        start=engine_pb2.AttachParams(container=info.id, stdin=stdin)))
    responses = backends(request).execs.attach(session.requests(), next_run=True)
    try:
        first = await anext(responses, None)  # "attached", or an error as JSON
    except BaseException:
        session.end()
        await responses.aclose()
        raise
    if first is None:
        raise errors.Conflict("You cannot attach to a stopped container, start it first")
    replay = (lambda hijacked: _replay_log(backends(request).containers, info, hijacked, wanted)) if logs else None
    with _registered(request, info.id, session):
        # docker closes the process's stdin at the client's EOF only for StdinOnce containers
        # (`run -i`); `docker attach` to a `run -d -i` one leaves it open for the next client.
        return await _interactive(request, session, responses, cfg.tty, wanted,
                                  stdin=stdin, close_on_eof=cfg.stdin_once, what="attach", before=replay,
                                  scanner=detach_keys.Scanner(keys) if cfg.tty else None,
                                  on_detach=lambda: backends(request).containers.publish("detach", info.id))


async def container_resize(request: web.Request) -> web.Response:
    height, width = _size(request)
    b = backends(request)
    info = await b.containers.inspect(request.match_info["id"])
    if not info.state.running:
        raise errors.Conflict(f"Container {info.id} is not running")
    sessions = request.app[RESIZE_KEY].get(info.id)
    if sessions:
        for s in sessions:
            s.resize(height, width)
    elif info.config.tty:
        # No session of ours: a short attach carries the size to conmon, then detaches.
        responses = b.execs.attach(_once(engine_pb2.AttachContainerRequest(start=engine_pb2.AttachParams(
            container=info.id, size=stdio_pb2.TerminalSize(height=height, width=width)))))
        try:
            await anext(responses, None)
        finally:
            await responses.aclose()
    return web.Response(status=200)


async def _once(message):
    yield message
